"""Projects: unique names, partial updates, deleting only empty ones."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.services import projects
from app.services.actors import Actor
from app.services.auth import Registration
from tests.support import factories


def test_names_are_unique_and_updates_keep_what_is_not_given(
    session: Session, actor: Actor
) -> None:
    project = projects.create_project(session, actor=actor, name="billing", description="d")
    with pytest.raises(Conflict):
        projects.create_project(session, actor=actor, name="billing")
    renamed = projects.update_project(session, actor=actor, project_id=project.id, name="ledger")
    assert (renamed.name, renamed.description) == ("ledger", "d")


def test_a_project_with_queues_is_not_deleted(
    session: Session, org: Registration, actor: Actor
) -> None:
    factories.queue(session, actor)
    with pytest.raises(Conflict):
        projects.delete_project(session, actor=actor, project_id=org.project.id)
