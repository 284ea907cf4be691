"""API keys: create (the secret is shown once), list, get and revoke.

A key reads ``tf_<prefix>_<secret>``.  Only the prefix (to find the key) and a
hash of the secret are stored.  A key's scopes are a subset of its creator's
permissions when it is made.

A key may mint keys (with ``apikey:admin``).  Its lineage is written down when it is
made, so that using a key stays one indexed lookup
(``app.services.auth.actor_for_api_key``):

- ``created_by_id`` is the user at the top of the chain, whose current role caps
  every key under them, and whose removal revokes them all;
- ``created_by_key_id`` is the minting key: revoking a key revokes what it minted,
  transitively;
- a minted key expires no later than the key that minted it.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from app.models import ApiKey, utcnow
from app.services.actors import Actor, Permission
from app.services.auth import API_KEY_PREFIX, hash_api_key_secret
from app.services.pagination import Page, paginate
from app.services.validation import check_datetime, check_name, parse_uuid

PREFIX_LENGTH = 12
SECRET_BYTES = 32
# Alphanumeric only: ``_`` separates the parts of a key and must not occur in a prefix.
_PREFIX_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key and its full secret, which is never available again."""

    api_key: ApiKey
    key: str


def _check_scopes(actor: Actor, scopes: Iterable[str]) -> list[str]:
    requested: set[Permission] = set()
    for scope in scopes:
        if scope not in Permission._value2member_map_:
            raise ValidationFailed.field("scopes", f"Unknown scope {scope!r}.")
        requested.add(Permission(scope))
    if not requested:
        raise ValidationFailed.field("scopes", "Give at least one scope.")
    beyond = requested - actor.permissions
    if beyond:
        names = ", ".join(sorted(beyond))
        raise PermissionDenied(f"A key cannot hold permissions its creator lacks: {names}")
    return sorted(requested)


def _check_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    expires_at = check_datetime(expires_at, "expires_at")
    if expires_at <= utcnow():
        raise ValidationFailed.field("expires_at", "Must be in the future.")
    return expires_at


def _live_parent(session: Session, key_id: uuid.UUID) -> ApiKey:
    """Lock the minting key and re-read it: revoking it waits for this mint to commit."""
    parent = session.scalar(
        select(ApiKey)
        .where(ApiKey.id == key_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if parent is None or parent.revoked_at is not None:
        raise Unauthenticated("This API key has been revoked")
    if parent.expires_at is not None and parent.expires_at <= utcnow():
        raise Unauthenticated("This API key has expired")
    return parent


def _within_parent(expires_at: datetime | None, parent: ApiKey) -> datetime | None:
    if parent.expires_at is None:
        return expires_at
    if expires_at is None:
        return parent.expires_at
    if expires_at > parent.expires_at:
        raise ValidationFailed.field(
            "expires_at",
            "Must not be later than the expiry of the key that creates it "
            f"({parent.expires_at.isoformat()}).",
        )
    return expires_at


def _new_prefix(session: Session) -> str:
    while True:
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            return prefix


def create_api_key(
    session: Session,
    *,
    actor: Actor,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
) -> CreatedApiKey:
    """Create a key with ``scopes`` (a subset of the actor's permissions)."""
    actor.require(Permission.APIKEY_ADMIN)
    name = check_name(name)
    checked_scopes = _check_scopes(actor, scopes)
    expires_at = _check_expiry(expires_at)
    created_by_id = actor.user_id
    if actor.api_key_id is not None:
        parent = _live_parent(session, actor.api_key_id)
        created_by_id = parent.created_by_id
        expires_at = _within_parent(expires_at, parent)
    if created_by_id is None:
        raise Unauthenticated("This API key's creator no longer exists")
    prefix = _new_prefix(session)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    api_key = ApiKey(
        organization_id=actor.organization_id,
        created_by_id=created_by_id,
        created_by_key_id=actor.api_key_id,
        name=name,
        prefix=prefix,
        key_hash=hash_api_key_secret(secret),
        scopes=checked_scopes,
        expires_at=expires_at,
    )
    session.add(api_key)
    session.flush()
    if actor.api_key_id is not None:
        # SQLite takes no row locks: re-check once this transaction holds the write lock,
        # so a revocation that committed meanwhile is seen.
        _live_parent(session, actor.api_key_id)
    return CreatedApiKey(api_key=api_key, key=f"{API_KEY_PREFIX}_{prefix}_{secret}")


def list_api_keys(session: Session, *, actor: Actor, page: int, limit: int) -> Page[ApiKey]:
    """List the organization's keys, newest first, revoked ones included."""
    actor.require(Permission.APIKEY_ADMIN)
    query = (
        select(ApiKey)
        .where(ApiKey.organization_id == actor.organization_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return paginate(session, query, page=page, limit=limit)


def get_api_key(session: Session, *, actor: Actor, api_key_id: str | uuid.UUID) -> ApiKey:
    """Return one of the organization's keys; any other id is not found."""
    key_id = parse_uuid(api_key_id, what="API key")
    api_key = session.get(ApiKey, key_id)
    if api_key is None or api_key.organization_id != actor.organization_id:
        raise NotFound("API key not found")
    actor.require(Permission.APIKEY_ADMIN)
    return api_key


def revoke_api_key(session: Session, *, actor: Actor, api_key_id: str | uuid.UUID) -> ApiKey:
    """Revoke a key and every key minted under it for good; again changes nothing."""
    api_key = get_api_key(session, actor=actor, api_key_id=api_key_id)
    # Lock first: a mint under this key holds the lock until it commits, so the
    # lineage read below (a new snapshot) includes the key it minted.
    session.execute(select(ApiKey.id).where(ApiKey.id == api_key.id).with_for_update())
    lineage = select(ApiKey.id).where(ApiKey.id == api_key.id).cte("lineage", recursive=True)
    lineage = lineage.union_all(select(ApiKey.id).where(ApiKey.created_by_key_id == lineage.c.id))
    session.execute(
        update(ApiKey)
        .where(ApiKey.id.in_(select(lineage.c.id)), ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    session.refresh(api_key)
    return api_key
