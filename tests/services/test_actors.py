"""Actors: a role's permissions, and the refusal that names the missing one."""

from __future__ import annotations

import uuid

import pytest

from app.errors import PermissionDenied
from app.models import Role
from app.services.actors import ALL_PERMISSIONS, Actor, Permission


@pytest.mark.parametrize(
    ("role", "writes_jobs", "administers"),
    [
        (Role.OWNER, True, True),
        (Role.ADMIN, True, True),
        (Role.MEMBER, True, False),
        (Role.VIEWER, False, False),
    ],
)
def test_a_role_grants_its_permissions(role: Role, writes_jobs: bool, administers: bool) -> None:
    actor = Actor.for_user(user_id=uuid.uuid4(), organization_id=uuid.uuid4(), role=role)
    assert actor.can(Permission.JOB_READ)
    assert actor.can(Permission.JOB_WRITE) is writes_jobs
    assert actor.can(Permission.ORG_ADMIN) is administers
    assert (actor.permissions == ALL_PERMISSIONS) is administers


def test_require_names_the_missing_permission() -> None:
    viewer = Actor.for_user(user_id=uuid.uuid4(), organization_id=uuid.uuid4(), role=Role.VIEWER)
    with pytest.raises(PermissionDenied, match="queue:write"):
        viewer.require(Permission.QUEUE_WRITE)
