"""Projects: groupings of queues inside an organization."""

from __future__ import annotations

import uuid

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import Project, Queue
from app.services.actors import Actor, Permission
from app.services.pagination import Page, paginate
from app.services.validation import UNSET, check_description, check_name, parse_uuid


def get_project(session: Session, *, actor: Actor, project_id: str | uuid.UUID) -> Project:
    """Return one of the actor's projects."""
    actor.require(Permission.QUEUE_READ)
    project = session.get(Project, parse_uuid(project_id, what="Project"))
    if project is None or project.organization_id != actor.organization_id:
        raise NotFound("Project not found")
    return project


def list_projects(session: Session, *, actor: Actor, page: int, limit: int) -> Page[Project]:
    """List the organization's projects by name."""
    actor.require(Permission.QUEUE_READ)
    query = (
        select(Project)
        .where(Project.organization_id == actor.organization_id)
        .order_by(Project.name, Project.id)
    )
    return paginate(session, query, page=page, limit=limit)


def _check_unique_name(
    session: Session, actor: Actor, name: str, exclude: uuid.UUID | None
) -> None:
    query = select(Project.id).where(
        Project.organization_id == actor.organization_id, Project.name == name
    )
    if exclude is not None:
        query = query.where(Project.id != exclude)
    if session.scalar(query) is not None:
        raise Conflict(f"A project named '{name}' already exists")


def create_project(
    session: Session, *, actor: Actor, name: str, description: str | None = None
) -> Project:
    """Create a project; names are unique within the organization."""
    actor.require(Permission.QUEUE_WRITE)
    name = check_name(name)
    _check_unique_name(session, actor, name, None)
    project = Project(
        organization_id=actor.organization_id,
        name=name,
        description=check_description(description),
    )
    session.add(project)
    session.flush()
    return project


def update_project(
    session: Session,
    *,
    actor: Actor,
    project_id: str | uuid.UUID,
    name: str | None = None,
    description: str | None = UNSET,
) -> Project:
    """Rename a project or change its description."""
    project = get_project(session, actor=actor, project_id=project_id)
    actor.require(Permission.QUEUE_WRITE)
    if name is not None:
        name = check_name(name)
        _check_unique_name(session, actor, name, project.id)
        project.name = name
    if description is not UNSET:
        project.description = check_description(description)
    session.flush()
    return project


def delete_project(session: Session, *, actor: Actor, project_id: str | uuid.UUID) -> None:
    """Delete an empty project; one that still has queues is a conflict."""
    project = get_project(session, actor=actor, project_id=project_id)
    actor.require(Permission.QUEUE_WRITE)
    if session.scalar(select(exists().where(Queue.project_id == project.id))):
        raise Conflict("Delete or move the project's queues first")
    session.delete(project)
    session.flush()
