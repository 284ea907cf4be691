"""A queue's settings: what a client may set, the bounds, the defaults, and how they are stored.

A queue stores only the settings its owner gave (``queues.settings``, JSON), so the
API shows them back as given; every reader takes :meth:`QueueSettings.from_stored`,
which fills in the defaults.  :meth:`QueueSettings.check` validates client input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from app.errors import ValidationFailed
from app.models import WorkerType
from app.services.validation import check_json_text


@dataclass(frozen=True)
class QueueSettings:
    """The effective settings of a queue, defaults included."""

    max_attempts: int = 3
    retry_backoff_seconds: int = 2
    retry_backoff_max_seconds: int = 300
    timeout_seconds: int = 1500
    # None: any worker type may run the queue's jobs.
    worker_type: str | None = None

    # name -> (low, high) of every integer setting; worker_type is the one string setting.
    INTEGER_BOUNDS: ClassVar[dict[str, tuple[int, int]]] = {
        "max_attempts": (1, 10),
        "retry_backoff_seconds": (0, 3600),
        "retry_backoff_max_seconds": (0, 86400),
        "timeout_seconds": (1, 3000),
    }

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> QueueSettings:
        """The effective settings of a queue whose stored settings are ``stored``."""
        if not stored:
            return _DEFAULTS
        known = {key: value for key, value in stored.items() if key in _FIELDS}
        return cls(**known)

    @classmethod
    def check(cls, settings: Any) -> dict[str, Any]:
        """Validate client settings; return them as stored (only the keys given)."""
        if settings is None:
            return {}
        if not isinstance(settings, dict):
            raise ValidationFailed.field("settings", "Must be an object.")
        check_json_text(settings, "settings")
        errors: dict[str, list[str]] = {}
        for key, value in settings.items():
            if key in cls.INTEGER_BOUNDS:
                low, high = cls.INTEGER_BOUNDS[key]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not low <= value <= high
                ):
                    errors[f"settings.{key}"] = [f"Must be an integer between {low} and {high}."]
            elif key == "worker_type":
                if not isinstance(value, str) or value not in WorkerType._value2member_map_:
                    allowed = ", ".join(w.value for w in WorkerType)
                    errors[f"settings.{key}"] = [f"Must be one of: {allowed}."]
            else:
                errors[f"settings.{key}"] = ["Unknown setting."]
        if errors:
            raise ValidationFailed("Invalid queue settings", errors=errors)
        return dict(settings)


_FIELDS = frozenset(("worker_type", *QueueSettings.INTEGER_BOUNDS))
_DEFAULTS = QueueSettings()
