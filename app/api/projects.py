"""/projects: CRUD."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.api import schemas
from app.api.context import current_actor, db
from app.api.extensions import Blueprint
from app.api.pagination import page_body
from app.models import Project
from app.services import projects as project_service

blp = Blueprint("projects", __name__, url_prefix="/api/v1/projects", description="Projects")


@blp.route("")
class Projects(MethodView):
    @blp.arguments(schemas.PageArgsSchema, location="query")
    @blp.response(200, schemas.ProjectListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List projects."""
        return page_body(
            "projects", project_service.list_projects(db(), actor=current_actor(), **args)
        )

    @blp.arguments(schemas.ProjectCreateSchema)
    @blp.response(201, schemas.ProjectSchema)
    def post(self, args: dict[str, Any]) -> Project:
        """Create a project."""
        return project_service.create_project(db(), actor=current_actor(), **args)


@blp.route("/<id:project_id>")
class ProjectItem(MethodView):
    @blp.response(200, schemas.ProjectSchema)
    def get(self, project_id: str) -> Project:
        """Get a project."""
        return project_service.get_project(db(), actor=current_actor(), project_id=project_id)

    @blp.arguments(schemas.ProjectUpdateSchema)
    @blp.response(200, schemas.ProjectSchema)
    def patch(self, args: dict[str, Any], project_id: str) -> Project:
        """Rename a project or change its description."""
        return project_service.update_project(
            db(), actor=current_actor(), project_id=project_id, **args
        )

    @blp.response(204)
    def delete(self, project_id: str) -> None:
        """Delete an empty project."""
        project_service.delete_project(db(), actor=current_actor(), project_id=project_id)
