"""Checks shared by every service: text, names, descriptions, times, ids, JSON documents.

Both edges hand client input to the services unchecked beyond its shape, so
every rule about what TaskForge can store lives here, once: text without NUL
characters or unpaired surrogates (PostgreSQL refuses both), datetimes with an
offset that convert to UTC within the calendar, bounded JSON documents.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from app.errors import ValidationFailed

NAME_MAX = 100
DESCRIPTION_MAX = 500
MAX_JSON_DEPTH = 32
UNSTORABLE_TEXT = "Must not contain NUL characters or unpaired surrogates."
# An argument the caller did not give, where None is a value (e.g. "no description").
UNSET: Any = object()


def is_storable(text: str) -> bool:
    """Tell whether PostgreSQL can store ``text`` (SQLite could, but the two must agree)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate
        return False
    return True


def check_text(value: str, field: str) -> str:
    """Refuse text that SQL cannot store or compare: NUL characters, unpaired surrogates."""
    if not is_storable(value):
        raise ValidationFailed.field(field, UNSTORABLE_TEXT)
    return value


def check_datetime(value: datetime, field: str) -> datetime:
    """Return an aware datetime in UTC; naive ones and instants outside years 1-9999 are errors."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed.field(field, "Must include a timezone offset.")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        raise ValidationFailed.field(
            field, "Out of range: must fall between years 1 and 9999 in UTC."
        ) from exc


def check_name(value: str, field: str = "name") -> str:
    """Trim a name and enforce 1-100 storable characters."""
    name = check_text(value, field).strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise ValidationFailed.field(field, f"Length must be between 1 and {NAME_MAX}.")
    return name


def check_description(value: str | None) -> str | None:
    """Enforce at most 500 storable characters."""
    if value is not None:
        check_text(value, "description")
    if value is not None and len(value) > DESCRIPTION_MAX:
        raise ValidationFailed.field("description", f"Length must be at most {DESCRIPTION_MAX}.")
    return value


def check_range(value: int, field: str, low: int, high: int) -> int:
    """Enforce ``low <= value <= high`` for an integer field."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed.field(field, f"Must be between {low} and {high}.")
    return value


def parse_uuid(value: str | uuid.UUID, *, what: str) -> uuid.UUID:
    """Parse the id of the object a call addresses; a malformed one is a validation error."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValidationFailed(
            f"Malformed {what.lower()} id: not a UUID", errors={"id": ["Not a valid UUID."]}
        ) from exc


def parse_uuid_field(value: str | uuid.UUID, field: str) -> uuid.UUID:
    """Parse an id given as an input field; a malformed one is a validation error."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValidationFailed.field(field, "Not a valid UUID.") from exc


def json_depth(value: Any) -> int:
    """Return the nesting depth of a JSON value (scalars are depth 0)."""
    depth, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        depth = max(depth, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return depth


def check_json_text(value: Any, field: str) -> Any:
    """Refuse a JSON value any of whose strings or keys SQL cannot store."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            check_text(node, field)
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return value


def check_json_document(value: Any, field: str, *, max_bytes: int) -> Any:
    """Enforce a size and nesting bound, and storable text, on a client-supplied JSON value."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValidationFailed.field(field, f"Nesting deeper than {MAX_JSON_DEPTH} levels.")
    check_json_text(value, field)
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ValidationFailed.field(field, "Not representable as JSON.") from exc
    if size > max_bytes:
        raise ValidationFailed.field(field, f"Larger than {max_bytes} bytes once encoded.")
    return value
