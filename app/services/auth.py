"""Registration, password login and change, and turning credentials into an ``Actor``.

Token signing and verifying are ``app.services.tokens``'; this module only
decides who a verified identity is *now*: a deactivated user, a changed role
or a changed password takes effect on the next request, not when the token expires.
Each lookup is one indexed query that also reads the organization's settings, so
the edges can apply its request limit without another query.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, Row, and_, select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, Unauthenticated, ValidationFailed
from app.models import ApiKey, Organization, Project, Role, User, utcnow
from app.services.actors import ROLE_PERMISSIONS, Actor, Permission
from app.services.ratelimit import organization_limit
from app.services.validation import check_name, check_text

# OWASP's argon2id floor: 19 MiB, two passes, one lane (~20 ms here).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verifying against this keeps a login for an unknown email as slow as a real one.
_DUMMY_HASH = _hasher.hash("taskforge-timing-equaliser")

DEFAULT_PROJECT_NAME = "default"
PASSWORD_MIN, PASSWORD_MAX = 8, 128
EMAIL_MAX = 254


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Check a password against its argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def normalize_email(email: str) -> str:
    """Lower-case and trim an email address; reject what is obviously not one."""
    value = check_text(email, "email").strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or len(value) > EMAIL_MAX or " " in value:
        raise ValidationFailed.field("email", "Not a valid email address.")
    return value


def check_password_strength(password: str, *, field: str = "password") -> None:
    """Enforce the password length bounds and storable characters."""
    check_text(password, field)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValidationFailed.field(
            field, f"Length must be between {PASSWORD_MIN} and {PASSWORD_MAX}."
        )


def create_user(
    session: Session, *, organization_id: uuid.UUID, email: str, password: str, role: Role
) -> User:
    """Create a user; emails are unique across TaskForge."""
    email = normalize_email(email)
    check_password_strength(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("A user with this email already exists")
    user = User(
        organization_id=organization_id,
        email=email,
        password_hash=hash_password(password),
        role=role,
    )
    session.add(user)
    session.flush()
    return user


@dataclass(frozen=True)
class Registration:
    """What registration created."""

    user: User
    organization: Organization
    project: Project


def register(
    session: Session, *, email: str, password: str, organization_name: str
) -> Registration:
    """Create an organization, its owner and its ``default`` project."""
    name = check_name(organization_name, "organization_name")
    organization = Organization(name=name, settings={})
    session.add(organization)
    session.flush()
    user = create_user(
        session, organization_id=organization.id, email=email, password=password, role=Role.OWNER
    )
    project = Project(organization_id=organization.id, name=DEFAULT_PROJECT_NAME)
    session.add(project)
    session.flush()
    return Registration(user=user, organization=organization, project=project)


OPERATOR_ORGANIZATION = "Platform operators"


def create_operator(
    session: Session, *, email: str, password: str, organization_name: str = OPERATOR_ORGANIZATION
) -> Registration:
    """Create a platform operator: the owner of a new organization, flagged ``is_operator``.

    Only the command line calls this; no API grants the flag.
    """
    registration = register(
        session, email=email, password=password, organization_name=organization_name
    )
    registration.user.is_operator = True
    session.flush()
    return registration


def authenticate(session: Session, *, email: str, password: str) -> User:
    """Return the active user with these credentials, else raise ``Unauthenticated``."""
    # Text no stored email or password can hold is malformed input, not a wrong guess
    # (and argon2 cannot hash an unpaired surrogate).
    check_text(email, "email")
    check_text(password, "password")
    try:
        email = normalize_email(email)
    except ValidationFailed:
        email = ""
    user = session.scalar(select(User).where(User.email == email)) if email else None
    if user is None:
        verify_password(_DUMMY_HASH, password)
        raise Unauthenticated("Invalid email or password")
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthenticated("Invalid email or password")
    return user


def change_password(
    session: Session, *, user_id: uuid.UUID, current_password: str, new_password: str
) -> User:
    """Replace the user's password and end every session of theirs (tokens already issued)."""
    # Locked, so of two concurrent changes the second checks the first one's password.
    user = session.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None or not user.is_active:
        raise Unauthenticated("The token's user no longer exists or is disabled")
    if not verify_password(user.password_hash, current_password):
        raise ValidationFailed.field("current_password", "This is not your current password.")
    check_password_strength(new_password, field="new_password")
    if new_password == current_password:
        raise ValidationFailed.field("new_password", "Choose a password you do not use now.")
    # Incremented in SQL, so concurrent changes each end the sessions before them.
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            password_hash=hash_password(new_password),
            token_generation=User.token_generation + 1,
        ),
        execution_options={"synchronize_session": False},
    )
    session.refresh(user)
    return user


TOKEN_GENERATION_CLAIM = "gen"


def token_claims(user: User, *, family: str) -> dict[str, Any]:
    """Claims embedded in a user's tokens besides ``sub``."""
    return {
        "org_id": str(user.organization_id),
        "role": user.role.value,
        "family": family,
        TOKEN_GENERATION_CLAIM: user.token_generation,
    }


def _active_user(session: Session, user_id: Any) -> tuple[User, dict[str, Any] | None]:
    """Load an active user and their organization's settings in one query."""
    try:
        uid = uuid.UUID(str(user_id))
    except (ValueError, TypeError, AttributeError) as exc:
        raise Unauthenticated("The token's subject is not a user") from exc
    row = session.execute(
        select(User, Organization.settings)
        .join(Organization, Organization.id == User.organization_id)
        .where(User.id == uid)
    ).first()
    if row is None or not row[0].is_active:
        raise Unauthenticated("The token's user no longer exists or is disabled")
    return row[0], row[1]


def _user_actor(user: User, org_settings: dict[str, Any] | None) -> Actor:
    return Actor.for_user(
        user_id=user.id,
        organization_id=user.organization_id,
        role=user.role,
        rate_limit=organization_limit(org_settings),
        operator=user.is_operator,
    )


def actor_for_user_id(session: Session, user_id: str) -> Actor:
    """Resolve a user id to the user's current actor (no token involved)."""
    return _user_actor(*_active_user(session, user_id))


def _token_user(session: Session, claims: Mapping[str, Any]) -> tuple[User, dict[str, Any] | None]:
    user, org_settings = _active_user(session, claims.get("sub"))
    # Tokens from before generations existed carry none: they count as the first.
    if claims.get(TOKEN_GENERATION_CLAIM, 0) != user.token_generation:
        raise Unauthenticated("The token has been revoked: the password was changed")
    return user, org_settings


def user_for_token(session: Session, claims: Mapping[str, Any]) -> User:
    """Return the active user a verified token stands for, if its session still lives."""
    return _token_user(session, claims)[0]


def actor_for_token(session: Session, claims: Mapping[str, Any]) -> Actor:
    """Resolve a verified token's claims to the user's current actor."""
    return _user_actor(*_token_user(session, claims))


API_KEY_PREFIX = "tf"
API_KEY_PREFIX_MAX = 32
# Record ``last_used_at`` at this resolution, so an API-key request is not also a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_api_key_secret(secret: str) -> str:
    """Hash an API key's random secret (256 bits, so one SHA-256 suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_api_key(raw_key: str) -> tuple[str, str] | None:
    """Split ``tf_<prefix>_<secret>`` into prefix and secret; None when malformed."""
    parts = raw_key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    if len(parts[1]) > API_KEY_PREFIX_MAX or not parts[1].isalnum():
        return None
    return parts[1], parts[2]


def _key_permissions(key: ApiKey, creator: User | None) -> frozenset[Permission]:
    # ``created_by_id`` is the user at the top of the key's chain.  Every key between
    # holds at least this key's scopes (checked when it minted it), is revoked with
    # its ancestors and expires no later than they do (``app.services.apikeys``), so
    # that user's current role is the whole chain's cap.
    if creator is None:
        raise Unauthenticated("This API key's creator no longer exists")
    if not creator.is_active:
        raise Unauthenticated("This API key's creator is disabled")
    scopes = frozenset(Permission(s) for s in key.scopes if s in Permission._value2member_map_)
    return scopes & ROLE_PERMISSIONS[creator.role]


def _key_row(
    session: Session, where: ColumnElement[bool]
) -> Row[ApiKey, User | None, dict[str, Any] | None] | None:
    """The key, the user at the top of its chain and its organization's settings."""
    return session.execute(
        select(ApiKey, User, Organization.settings)
        .join(Organization, Organization.id == ApiKey.organization_id)
        .outerjoin(
            User,
            and_(User.id == ApiKey.created_by_id, User.organization_id == ApiKey.organization_id),
        )
        .where(where)
    ).first()


def actor_for_api_key(session: Session, raw_key: str) -> Actor:
    """Resolve a presented ``tf_<prefix>_<secret>`` key to its actor (one indexed query)."""
    return resolve_api_key(session, raw_key)[0]


def resolve_api_key(session: Session, raw_key: str) -> tuple[Actor, datetime | None]:
    """The actor of a presented key, and when the key expires (None: never)."""
    parts = split_api_key(raw_key)
    if parts is None:
        raise Unauthenticated("Malformed API key")
    prefix, secret = parts
    row = _key_row(session, ApiKey.prefix == prefix)
    if row is None or not hmac.compare_digest(row[0].key_hash, hash_api_key_secret(secret)):
        raise Unauthenticated("Invalid API key")
    return _key_actor(row), row[0].expires_at


def actor_for_api_key_id(session: Session, api_key_id: uuid.UUID) -> Actor:
    """Resolve a key the caller already proved it holds (e.g. by a ticket) to its actor."""
    row = _key_row(session, ApiKey.id == api_key_id)
    if row is None:
        raise Unauthenticated("Invalid API key")
    return _key_actor(row)


def _key_actor(row: Row[ApiKey, User | None, dict[str, Any] | None]) -> Actor:
    key, creator, org_settings = row
    now = utcnow()
    if key.revoked_at is not None:
        raise Unauthenticated("This API key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthenticated("This API key has expired")
    permissions = _key_permissions(key, creator)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now
    return Actor(
        organization_id=key.organization_id,
        permissions=permissions,
        api_key_id=key.id,
        rate_limit=organization_limit(org_settings),
    )
