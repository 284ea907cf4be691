"""/organizations: the caller's organization and its members."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.api import schemas
from app.api.context import current_actor, db
from app.api.extensions import Blueprint
from app.api.pagination import page_body
from app.models import Organization, User
from app.services import organizations as org_service

blp = Blueprint(
    "organizations", __name__, url_prefix="/api/v1/organizations", description="Organizations"
)


@blp.route("/current")
class CurrentOrganization(MethodView):
    @blp.response(200, schemas.OrganizationSchema)
    def get(self) -> Organization:
        """Get the caller's own organization."""
        actor = current_actor()
        return org_service.get_organization(
            db(), actor=actor, organization_id=actor.organization_id
        )

    @blp.arguments(schemas.OrganizationUpdateSchema)
    @blp.response(200, schemas.OrganizationSchema)
    def patch(self, args: dict[str, Any]) -> Organization:
        """Rename the caller's own organization or replace its settings."""
        actor = current_actor()
        return org_service.update_organization(
            db(), actor=actor, organization_id=actor.organization_id, **args
        )


@blp.route("/<id:organization_id>")
class OrganizationItem(MethodView):
    @blp.response(200, schemas.OrganizationSchema)
    def get(self, organization_id: str) -> Organization:
        """Get an organization (only the caller's own exists for them)."""
        return org_service.get_organization(
            db(), actor=current_actor(), organization_id=organization_id
        )

    @blp.arguments(schemas.OrganizationUpdateSchema)
    @blp.response(200, schemas.OrganizationSchema)
    def patch(self, args: dict[str, Any], organization_id: str) -> Organization:
        """Rename the organization or replace its settings."""
        return org_service.update_organization(
            db(), actor=current_actor(), organization_id=organization_id, **args
        )


@blp.route("/<id:organization_id>/members")
class Members(MethodView):
    @blp.arguments(schemas.PageArgsSchema, location="query")
    @blp.response(200, schemas.MemberListSchema)
    def get(self, args: dict[str, Any], organization_id: str) -> dict[str, Any]:
        """List the organization's members."""
        page = org_service.list_members(
            db(), actor=current_actor(), organization_id=organization_id, **args
        )
        return page_body("members", page)

    @blp.arguments(schemas.MemberCreateSchema)
    @blp.response(201, schemas.MemberSchema)
    def post(self, args: dict[str, Any], organization_id: str) -> User:
        """Add a member with a password and a role."""
        return org_service.add_member(
            db(), actor=current_actor(), organization_id=organization_id, **args
        )


@blp.route("/<id:organization_id>/members/<id:user_id>")
class Member(MethodView):
    @blp.arguments(schemas.MemberUpdateSchema)
    @blp.response(200, schemas.MemberSchema)
    def patch(self, args: dict[str, Any], organization_id: str, user_id: str) -> User:
        """Change a member's role."""
        return org_service.update_member_role(
            db(), actor=current_actor(), organization_id=organization_id, user_id=user_id, **args
        )

    @blp.response(204)
    def delete(self, organization_id: str, user_id: str) -> None:
        """Remove a member."""
        org_service.remove_member(
            db(), actor=current_actor(), organization_id=organization_id, user_id=user_id
        )
