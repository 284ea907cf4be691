"""QueueSettings: defaults, bounds and the stored form, in one place."""

from __future__ import annotations

import pytest

from app.errors import ValidationFailed
from app.services.queue_settings import QueueSettings


def test_a_queue_without_settings_has_the_defaults() -> None:
    assert QueueSettings.from_stored(None) == QueueSettings.from_stored({}) == QueueSettings()
    defaults = QueueSettings()
    assert (defaults.max_attempts, defaults.timeout_seconds) == (3, 1500)
    assert (defaults.retry_backoff_seconds, defaults.retry_backoff_max_seconds) == (2, 300)
    assert defaults.worker_type is None


def test_stored_settings_override_only_what_they_name() -> None:
    settings = QueueSettings.from_stored({"timeout_seconds": 9, "worker_type": "specialized_io"})
    assert (settings.timeout_seconds, settings.worker_type) == (9, "specialized_io")
    assert settings.max_attempts == 3


def test_check_returns_what_was_given_and_nothing_more() -> None:
    assert QueueSettings.check({"max_attempts": 5}) == {"max_attempts": 5}
    assert QueueSettings.check(None) == {}


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"max_attempts": 0}, "settings.max_attempts"),
        ({"timeout_seconds": 3001}, "settings.timeout_seconds"),
        ({"retry_backoff_seconds": True}, "settings.retry_backoff_seconds"),
        ({"worker_type": "quantum"}, "settings.worker_type"),
        ({"colour": "blue"}, "settings.colour"),
    ],
)
def test_check_refuses_what_is_out_of_bounds_or_unknown(given: dict, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        QueueSettings.check(given)
    assert field in refused.value.errors


def test_check_refuses_a_non_object() -> None:
    with pytest.raises(ValidationFailed):
        QueueSettings.check(["max_attempts", 3])
