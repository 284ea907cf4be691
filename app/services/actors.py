"""Who is acting: a user or an API key, with its organization and permissions."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

from app.errors import PermissionDenied
from app.models import Role

# A value of the actor epoch as Redis returns it (None: no epoch is set).
Epoch = bytes | str | None


class Permission(enum.StrEnum):
    """A permission an actor may hold; API key scopes use the same strings."""

    QUEUE_READ = "queue:read"
    QUEUE_WRITE = "queue:write"
    JOB_READ = "job:read"
    JOB_WRITE = "job:write"
    WORKER_READ = "worker:read"
    WORKER_WRITE = "worker:write"
    APIKEY_ADMIN = "apikey:admin"
    ORG_ADMIN = "org:admin"


ALL_PERMISSIONS = frozenset(Permission)
READ_PERMISSIONS = frozenset({Permission.QUEUE_READ, Permission.JOB_READ, Permission.WORKER_READ})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: ALL_PERMISSIONS,
    Role.ADMIN: ALL_PERMISSIONS,
    Role.MEMBER: READ_PERMISSIONS | {Permission.QUEUE_WRITE, Permission.JOB_WRITE},
    Role.VIEWER: READ_PERMISSIONS,
}


@dataclass(frozen=True)
class Actor:
    """The principal behind a call; every service function receives one."""

    organization_id: uuid.UUID
    permissions: frozenset[Permission]
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    role: Role | None = None
    # The organization's own request limit (its ``rate_limit`` setting), read with the
    # credential so that limiting a call costs no query of its own.
    rate_limit: str | None = None
    # A platform operator (a user flagged from the CLI, never an API key): sees every
    # organization in the monitor and controls the shared workers.
    operator: bool = False
    # The actor epoch (app.services.actor_epoch) this actor was resolved under, read
    # at the start of the call; None when it was not cached.  What else the call
    # caches per process (its queue, app.services.queue_cache) is valid under it too.
    epoch: Epoch = field(default=None, compare=False, repr=False)

    @classmethod
    def for_user(
        cls,
        *,
        user_id: uuid.UUID,
        organization_id: uuid.UUID,
        role: Role,
        rate_limit: str | None = None,
        operator: bool = False,
    ) -> Actor:
        """Build the actor of a logged-in user from their current role."""
        return cls(
            organization_id=organization_id,
            permissions=ROLE_PERMISSIONS[role],
            user_id=user_id,
            role=role,
            rate_limit=rate_limit,
            operator=operator,
        )

    def can(self, permission: Permission) -> bool:
        """Tell whether the actor holds ``permission``."""
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        """Raise ``PermissionDenied`` unless the actor holds ``permission``."""
        if permission not in self.permissions:
            raise PermissionDenied(f"This action needs the '{permission}' permission")
