"""What the OpenAPI document adds to flask-smorest's: id parameters, error responses, text rules.

The document must admit exactly what the API accepts, so generated clients and
fuzzers (tests/security/test_schemathesis_live.py) agree with the server.  The
rules themselves live in ``app.services``; this module only describes them.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from apispec import BasePlugin
from marshmallow import ValidationError, fields
from werkzeug.routing import BaseConverter

# Text the services store: no NUL anywhere (app.services.validation.check_text).
STORABLE_TEXT = "^[^\\u0000]*$"
# A name: storable, and not only whitespace (check_name trims it).
NAME_TEXT = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"

ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}
WRITE_METHODS = {"post", "put", "patch", "delete"}


class StrictBoolean(fields.Boolean):
    """JSON's ``true`` and ``false`` only; marshmallow's Boolean also takes 1, "yes", "on"..."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean.")
        return value


class IdConverter(BaseConverter):
    """A path segment naming an object by UUID.

    It matches any segment, as the default converter does, so that a malformed id
    reaches the services and answers 400 (not werkzeug's ``uuid`` converter's 404).
    """


def id_parameter_schema(_converter: BaseConverter) -> dict[str, Any]:
    """Document an ``<id:...>`` path parameter."""
    return {"type": "string", "format": "uuid"}


def _error(status: int, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


class ContractExtras(BasePlugin):
    """Add a schema's ``OPENAPI_EXTRA`` (what marshmallow fields cannot say) to its component."""

    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        extra: dict[str, Any] = getattr(kwargs.get("schema"), "OPENAPI_EXTRA", {})
        return extra


class ErrorResponses(BasePlugin):
    """Document the errors each operation can answer, from what the operation takes.

    - every operation: 400 for malformed input it takes (parameters or a body);
    - authenticated ones: 401, 403 and 429;
    - those addressing an object by path: 404;
    - writes: 409 (a state that forbids it, or a concurrent change won);
    - those with a JSON body: 413 and 415.
    """

    def operation_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for method, operation in (operations or {}).items():
            responses = operation.setdefault("responses", {})
            for status, description in self._errors(path or "", method, operation, kwargs):
                if status not in responses and str(status) not in responses:
                    responses[status] = _error(status, description)

    @staticmethod
    def _errors(
        path: str, method: str, operation: dict[str, Any], kwargs: dict[str, Any]
    ) -> list[tuple[int, str]]:
        has_body = "requestBody" in operation
        has_path_id = "{" in path
        has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
        public = operation.get("security") == []
        errors: list[tuple[int, str]] = []
        if has_body or has_path_id or has_query:
            errors.append((400, "The input is malformed; `errors` names each field"))
        if not public:
            errors.append((401, "Missing, invalid, expired or revoked credentials"))
            errors.append((403, "The caller's role or the key's scopes do not allow this"))
        if has_path_id:
            errors.append((404, "No such object in the caller's organization"))
        if method in WRITE_METHODS and not public:
            errors.append((409, "The current state forbids this, or a concurrent change won"))
        if has_body:
            errors.append((413, "The request body is larger than the configured limit"))
            errors.append((415, "The request body is not application/json"))
        errors.append((429, "Rate limited; see Retry-After"))
        return [(status, f"{HTTPStatus(status).phrase}: {text}") for status, text in errors]
