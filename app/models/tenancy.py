"""Organizations, their users, projects and API keys."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, Timestamps, UUIDPrimaryKey


class Role(enum.StrEnum):
    """A user's role in their organization, most powerful first."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Organization(UUIDPrimaryKey, Timestamps, Base):
    """A tenant: everything else belongs to exactly one organization."""

    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(100))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class User(UUIDPrimaryKey, Timestamps, Base):
    """A person who logs in; belongs to one organization with one role."""

    __tablename__ = "users"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    is_active: Mapped[bool] = mapped_column(default=True)
    # Every token carries the generation it was issued in; raising it (a password change)
    # ends all the user's sessions at once, checked on the row each request loads anyway.
    token_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    # A platform operator (created with ``taskforge operator create``) sees every tenant
    # in the monitor and controls the shared workers; no API call can grant it.
    is_operator: Mapped[bool] = mapped_column(default=False, server_default=false())


class Project(UUIDPrimaryKey, Timestamps, Base):
    """A grouping of queues inside an organization."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500))


class ApiKey(UUIDPrimaryKey, Timestamps, Base):
    """A machine credential of an organization; only a hash of the secret is kept.

    ``created_by_id`` is the user at the top of the key's creator chain (for a key
    minted by a key, that key's user), ``created_by_key_id`` the key that minted it.
    A key whose user row is gone authenticates nobody.
    """

    __tablename__ = "api_keys"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
