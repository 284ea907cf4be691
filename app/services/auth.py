"""Registration, password login and turning credentials into an ``Actor``.

Token signing and decoding belong to the edges (flask-jwt-extended); this module
only decides who a verified identity is *now*: a deactivated user or a changed
role takes effect on the next request, not when the token expires.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, Unauthenticated, ValidationFailed
from app.models import ApiKey, Organization, Project, Role, User, utcnow
from app.services.actors import Actor, Permission

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
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or len(value) > EMAIL_MAX or " " in value:
        raise ValidationFailed.field("email", "Not a valid email address.")
    return value


def check_password_strength(password: str) -> None:
    """Enforce the password length bounds."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValidationFailed.field(
            "password", f"Length must be between {PASSWORD_MIN} and {PASSWORD_MAX}."
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
    name = organization_name.strip()
    if not 1 <= len(name) <= 100:
        raise ValidationFailed.field("organization_name", "Length must be between 1 and 100.")
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


def authenticate(session: Session, *, email: str, password: str) -> User:
    """Return the active user with these credentials, else raise ``Unauthenticated``."""
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


def token_claims(user: User) -> dict[str, Any]:
    """Claims embedded in a user's tokens besides ``sub``."""
    return {"org_id": str(user.organization_id), "role": user.role.value}


def actor_for_user_id(session: Session, user_id: str) -> Actor:
    """Resolve a token's subject to the user's current actor."""
    try:
        uid = uuid.UUID(user_id)
    except (ValueError, TypeError, AttributeError) as exc:
        raise Unauthenticated("The token's subject is not a user") from exc
    user = session.get(User, uid)
    if user is None or not user.is_active:
        raise Unauthenticated("The token's user no longer exists or is disabled")
    return Actor.for_user(user_id=user.id, organization_id=user.organization_id, role=user.role)


API_KEY_PREFIX = "tf"


def hash_api_key_secret(secret: str) -> str:
    """Hash an API key's random secret (256 bits, so one SHA-256 suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def actor_for_api_key(session: Session, raw_key: str) -> Actor:
    """Resolve a presented ``tf_<prefix>_<secret>`` key to its actor."""
    parts = raw_key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
        raise Unauthenticated("Malformed API key")
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if key is None or not hmac.compare_digest(key.key_hash, hash_api_key_secret(parts[2])):
        raise Unauthenticated("Invalid API key")
    now = utcnow()
    if key.revoked_at is not None:
        raise Unauthenticated("This API key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthenticated("This API key has expired")
    key.last_used_at = now
    return Actor(
        organization_id=key.organization_id,
        permissions=frozenset(
            Permission(s) for s in key.scopes if s in Permission._value2member_map_
        ),
        api_key_id=key.id,
    )
