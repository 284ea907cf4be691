"""/api-keys: list, create (the key is shown once), get, revoke."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.api import schemas
from app.api.context import current_actor, db
from app.api.extensions import Blueprint
from app.api.pagination import page_body
from app.models import ApiKey
from app.services import apikeys as apikey_service

blp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys", description="API keys")

_SHOWN_FIELDS = tuple(schemas.ApiKeySchema().fields)


@blp.route("")
class ApiKeys(MethodView):
    @blp.arguments(schemas.PageArgsSchema, location="query")
    @blp.response(200, schemas.ApiKeyListSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the organization's API keys (never their secrets)."""
        return page_body(
            "api_keys", apikey_service.list_api_keys(db(), actor=current_actor(), **args)
        )

    @blp.arguments(schemas.ApiKeyCreateSchema)
    @blp.response(201, schemas.ApiKeyCreatedSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Create an API key; the response is the only one that shows the key."""
        created = apikey_service.create_api_key(db(), actor=current_actor(), **args)
        body = {name: getattr(created.api_key, name) for name in _SHOWN_FIELDS}
        body["key"] = created.key
        return body


@blp.route("/<id:api_key_id>")
class ApiKeyItem(MethodView):
    @blp.response(200, schemas.ApiKeySchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, api_key_id: str) -> ApiKey:
        """Get an API key (never its secret)."""
        return apikey_service.get_api_key(db(), actor=current_actor(), api_key_id=api_key_id)

    @blp.response(204)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    def delete(self, api_key_id: str) -> None:
        """Revoke an API key."""
        apikey_service.revoke_api_key(db(), actor=current_actor(), api_key_id=api_key_id)


@blp.route("/<id:api_key_id>/revoke")
class RevokeApiKey(MethodView):
    @blp.response(204)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    @blp.alt_response(404, response="NOT_FOUND")
    def post(self, api_key_id: str) -> None:
        """Revoke an API key (the same as DELETE)."""
        apikey_service.revoke_api_key(db(), actor=current_actor(), api_key_id=api_key_id)
