"""Checks shared by every service: names, descriptions, ids, JSON documents."""

from __future__ import annotations

import json
import uuid
from typing import Any

from app.errors import ValidationFailed

NAME_MAX = 100
DESCRIPTION_MAX = 500
MAX_JSON_DEPTH = 32


def check_name(value: str, field: str = "name") -> str:
    """Trim a name and enforce 1-100 characters."""
    name = value.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise ValidationFailed.field(field, f"Length must be between 1 and {NAME_MAX}.")
    return name


def check_description(value: str | None) -> str | None:
    """Enforce at most 500 characters."""
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


def check_json_document(value: Any, field: str, *, max_bytes: int) -> Any:
    """Enforce a size and nesting bound on a client-supplied JSON value."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValidationFailed.field(field, f"Nesting deeper than {MAX_JSON_DEPTH} levels.")
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ValidationFailed.field(field, "Not representable as JSON.") from exc
    if size > max_bytes:
        raise ValidationFailed.field(field, f"Larger than {max_bytes} bytes once encoded.")
    return value
