"""The one rate-limit policy of both edges: per identity, per organization, all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from app.errors import ValidationFailed
from app.redis_server import RedisProcess
from app.services.actors import Actor, Permission
from app.services.ratelimit import RateLimited, RateLimiter, check_organization_settings


@pytest.fixture
def limiter(redis_server: RedisProcess) -> Iterator[RateLimiter]:
    """A limiter allowing 3 calls a minute per identity."""
    built = RateLimiter(redis_server.url, "3 per minute")
    yield built
    built.close()


def _actor(org: uuid.UUID, rate_limit: str | None = None) -> Actor:
    return Actor(
        organization_id=org,
        permissions=frozenset({Permission.JOB_READ}),
        api_key_id=uuid.uuid4(),
        rate_limit=rate_limit,
    )


def test_each_identity_has_its_own_budget(limiter: RateLimiter) -> None:
    org = uuid.uuid4()
    first, second = _actor(org), _actor(org)
    for _ in range(3):
        limiter.check(first, "127.0.0.1")
    with pytest.raises(RateLimited) as refused:
        limiter.check(first, "127.0.0.1")
    assert refused.value.verdict.retry_after >= 1
    assert limiter.check(second, "127.0.0.1") is not None


def test_an_organization_limit_is_shared_and_a_refusal_spends_nothing(
    limiter: RateLimiter,
) -> None:
    org = uuid.uuid4()
    one, two = _actor(org, "2 per minute"), _actor(org, "2 per minute")
    limiter.check(one, "a")
    limiter.check(two, "b")
    with pytest.raises(RateLimited):
        limiter.check(one, "a")
    verdict = limiter.spend(limiter.budgets(one, "a")[:1])
    # 3 per identity: the first call and this one; the refused call spent nothing.
    assert verdict is not None and verdict.remaining == 1


def test_an_organizations_rate_limit_setting_must_be_a_limit() -> None:
    check_organization_settings({"rate_limit": "600 per minute", "other": 1})
    with pytest.raises(ValidationFailed):
        check_organization_settings({"rate_limit": "0 per minute"})
