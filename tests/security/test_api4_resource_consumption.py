"""API4 Unrestricted Resource Consumption: bodies, pages, nesting and request rates are bounded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.redis_server import RedisProcess
from tests.conftest import Account, Auth
from tests.security.support import bearer, create_key, key_headers
from tests.support.redis_monitor import commands_sent


def _nested_text(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _from(ip: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": ip}}


# --- bodies ---------------------------------------------------------------------------


BIG_BODIES: dict[str, Callable[[FlaskClient, Account, str], Any]] = {
    "submit job": lambda c, a, big: c.post(
        "/api/v1/jobs",
        json={"queue_name": "q", "job_type": "echo", "payload": big},
        headers=a.headers,
    ),
    "create key": lambda c, a, big: c.post(
        "/api/v1/api-keys", json={"name": big, "scopes": ["job:read"]}, headers=a.headers
    ),
    "organization settings": lambda c, a, big: c.patch(
        f"/api/v1/organizations/{a.organization_id}",
        json={"settings": {"note": big}},
        headers=a.headers,
    ),
    "register": lambda c, a, big: c.post(
        "/api/v1/auth/register",
        json={"email": "x@example.com", "password": big, "organization_name": "x"},
    ),
}


@pytest.mark.parametrize("name", sorted(BIG_BODIES))
def test_body_over_the_limit_is_413(
    app_with: Callable[..., FlaskClient], owner: Account, name: str
) -> None:
    client = app_with(max_content_length=4096)
    response = BIG_BODIES[name](client, owner, "x" * 8192)
    assert response.status_code == 413
    assert response.json["status_code"] == 413


def test_job_payload_over_its_own_limit_is_400(
    client: FlaskClient, owner: Account, queue: dict
) -> None:
    response = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "echo", "payload": "x" * (600 * 1024)},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert "payload" in response.json["errors"]


# --- nesting --------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 200, 5_000])
def test_deeply_nested_payload_is_400_not_500(
    client: FlaskClient, owner: Account, queue: dict, depth: int
) -> None:
    envelope = json.dumps({"queue_id": queue["id"], "job_type": "echo", "payload": None})
    body = envelope.replace("null", _nested_text(depth))
    response = client.post(
        "/api/v1/jobs", data=body, content_type="application/json", headers=owner.headers
    )
    assert response.status_code == 400, response.json
    assert "nest" in response.json["error"].lower()


@pytest.mark.parametrize(
    "path", ["/api/v1/jobs", "/api/v1/queues", "/api/v1/api-keys", "/api/v1/auth/login"]
)
def test_a_megabyte_of_brackets_is_400_not_500(
    client: FlaskClient, owner: Account, path: str
) -> None:
    body = "[" * 400_000 + "]" * 400_000
    response = client.post(path, data=body, content_type="application/json", headers=owner.headers)
    assert response.status_code == 400
    assert response.json["status_code"] == 400


def test_nested_settings_are_400(client: FlaskClient, owner: Account) -> None:
    queue = client.post(
        "/api/v1/queues", json={"name": "n", "settings": {"a": _nested(40)}}, headers=owner.headers
    )
    assert queue.status_code == 400
    org = client.patch(
        f"/api/v1/organizations/{owner.organization_id}",
        json={"settings": {"a": _nested(40)}},
        headers=owner.headers,
    )
    assert org.status_code == 400


def test_a_wide_shallow_body_is_accepted(client: FlaskClient, owner: Account, queue: dict) -> None:
    payload = [{"n": [n]} for n in range(2_000)]
    response = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "echo", "payload": payload},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.json


# --- pages ----------------------------------------------------------------------------

LISTS = {
    "queues": lambda a: "/api/v1/queues",
    "jobs": lambda a: "/api/v1/jobs",
    "projects": lambda a: "/api/v1/projects",
    "members": lambda a: f"/api/v1/organizations/{a.organization_id}/members",
    "api keys": lambda a: "/api/v1/api-keys",
}


@pytest.mark.parametrize("name", sorted(LISTS))
def test_page_size_is_capped_at_100(client: FlaskClient, owner: Account, name: str) -> None:
    path = LISTS[name](owner)
    assert client.get(f"{path}?limit=100", headers=owner.headers).status_code == 200
    for query in ("limit=101", "limit=1000000", "limit=0", "limit=-1", "page=0", "page=x"):
        response = client.get(f"{path}?{query}", headers=owner.headers)
        assert response.status_code == 400, query


# --- request rates --------------------------------------------------------------------


def test_application_limit_answers_429_with_headers(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(rate_limit_default="3 per minute")
    for remaining in (2, 1, 0):
        ok = client.get("/api/v1/queues", headers=owner.headers)
        assert ok.status_code == 200
        assert ok.headers["X-RateLimit-Limit"] == "3"
        assert ok.headers["X-RateLimit-Remaining"] == str(remaining)
    limited = client.get("/api/v1/queues", headers=owner.headers)
    assert limited.status_code == 429
    assert limited.json["status_code"] == 429
    assert "3 per 1 minute" in limited.json["error"]
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["X-RateLimit-Reset"]) > 0


def test_a_user_is_one_bucket_from_any_address(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(rate_limit_default="3 per minute")
    statuses = [
        client.get("/api/v1/queues", headers=owner.headers, **_from(f"127.0.0.{n}")).status_code
        for n in range(11, 15)
    ]
    assert statuses == [200, 200, 200, 429]


def test_users_behind_one_address_have_their_own_buckets(
    app_with: Callable[..., FlaskClient], auth: Auth, owner: Account
) -> None:
    client = app_with(rate_limit_default="3 per minute")
    other = auth.register("Other")
    for _ in range(3):
        assert client.get("/api/v1/queues", headers=owner.headers).status_code == 200
    assert client.get("/api/v1/queues", headers=owner.headers).status_code == 429
    assert client.get("/api/v1/queues", headers=other.headers).status_code == 200


def test_invented_tokens_share_their_address_bucket(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(rate_limit_default="3 per minute")
    forged = owner.access_token[:-4] + "AAAA"
    statuses = [
        client.get("/api/v1/queues", headers=bearer(token), **_from("127.0.0.21")).status_code
        for token in ("garbage-1", "garbage-2", forged, "garbage-3")
    ]
    assert statuses == [401, 401, 401, 429]
    elsewhere = client.get("/api/v1/queues", headers=owner.headers, **_from("127.0.0.21"))
    assert elsewhere.status_code == 200


def test_a_known_key_prefix_does_not_drain_that_keys_bucket(
    app_with: Callable[..., FlaskClient], client: FlaskClient, owner: Account
) -> None:
    key = create_key(client, owner, ["queue:read"])
    limited = app_with(rate_limit_default="3 per minute")
    guess = {"X-API-Key": f"tf_{key['prefix']}_{'A' * 43}"}
    statuses = [
        limited.get("/api/v1/queues", headers=guess, **_from("127.0.0.31")).status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    real = limited.get("/api/v1/queues", headers=key_headers(key), **_from("127.0.0.32"))
    assert real.status_code == 200
    assert real.headers["X-RateLimit-Remaining"] == "2"


def test_an_organization_can_tighten_its_limit(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    key = create_key(client, owner, ["queue:read"])
    patched = client.patch(
        f"/api/v1/organizations/{owner.organization_id}",
        json={"settings": {"rate_limit": "2 per minute"}},
        headers=owner.headers,
    )
    assert patched.status_code == 200
    assert patched.json["settings"] == {"rate_limit": "2 per minute"}
    statuses = [client.get("/api/v1/queues", headers=owner.headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.get("/api/v1/queues", headers=owner.headers).headers["X-RateLimit-Limit"] == "2"
    # One budget for the organization: its keys have spent it too.
    assert client.get("/api/v1/queues", headers=key_headers(key)).status_code == 429
    other = auth.register("Other")
    assert all(
        client.get("/api/v1/queues", headers=other.headers).status_code == 200 for _ in range(5)
    )


def test_an_organization_cannot_loosen_the_platform_limit(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(rate_limit_default="3 per minute")
    client.patch(
        f"/api/v1/organizations/{owner.organization_id}",
        json={"settings": {"rate_limit": "1000 per second"}},
        headers=owner.headers,
    )
    statuses = [client.get("/api/v1/queues", headers=owner.headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize("value", ["fast", "0 per minute", "10 per fortnight", 600, "", "9" * 70])
def test_organization_rate_limit_is_validated(
    client: FlaskClient, owner: Account, value: Any
) -> None:
    response = client.patch(
        f"/api/v1/organizations/{owner.organization_id}",
        json={"settings": {"rate_limit": value}},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert "settings" in response.json["errors"]


def test_forwarded_for_is_ignored_by_default(app_with: Callable[..., FlaskClient]) -> None:
    client = app_with(rate_limit_default="3 per minute")
    statuses = [
        client.get(
            "/api/v1/openapi.json",
            headers={"X-Forwarded-For": f"127.0.1.{n}"},
            **_from("127.0.0.41"),
        ).status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


def test_forwarded_for_is_trusted_behind_a_configured_proxy(
    app_with: Callable[..., FlaskClient],
) -> None:
    client = app_with(rate_limit_default="3 per minute", trusted_proxies=1)
    proxy = _from("127.0.0.51")
    for n in range(4):
        response = client.get(
            "/api/v1/openapi.json", headers={"X-Forwarded-For": f"127.0.2.{n}"}, **proxy
        )
        assert response.status_code == 200
    same = [
        client.get(
            "/api/v1/openapi.json", headers={"X-Forwarded-For": "127.0.3.1"}, **proxy
        ).status_code
        for _ in range(4)
    ]
    assert same == [200, 200, 200, 429]
    # Only the last hop counts: a client cannot pick its address by prepending one.
    spoofed = client.get(
        "/api/v1/openapi.json", headers={"X-Forwarded-For": "127.0.9.9, 127.0.3.1"}, **proxy
    )
    assert spoofed.status_code == 429


def _tighten(client: FlaskClient, owner: Account, limit: str) -> None:
    response = client.patch(
        f"/api/v1/organizations/{owner.organization_id}",
        json={"settings": {"rate_limit": limit}},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.json


def test_an_organizations_limit_is_one_budget_for_all_its_keys_and_users(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    first = key_headers(create_key(client, owner, ["queue:read"], name="one"))
    second = key_headers(create_key(client, owner, ["queue:read"], name="two"))
    colleague = auth.member(owner, "viewer")
    _tighten(client, owner, "5 per minute")
    callers = [first, second, first, owner.headers, colleague.headers]
    for n, headers in enumerate(callers):
        response = client.get("/api/v1/queues", headers=headers)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert response.headers["X-RateLimit-Remaining"] == str(4 - n)
    for headers in (first, second, owner.headers, colleague.headers):
        limited = client.get("/api/v1/queues", headers=headers)
        assert limited.status_code == 429
        assert "5 per 1 minute" in limited.json["error"]
        assert 0 < int(limited.headers["Retry-After"]) <= 60
    other = auth.register("Other")
    assert client.get("/api/v1/queues", headers=other.headers).status_code == 200


def test_a_refused_request_spends_no_budget(
    app_with: Callable[..., FlaskClient], auth: Auth, owner: Account
) -> None:
    client = app_with(rate_limit_default="2 per minute")
    colleague = auth.member(owner, "viewer")
    _tighten(auth.client, owner, "4 per minute")
    statuses = [client.get("/api/v1/queues", headers=owner.headers).status_code for _ in range(6)]
    assert statuses == [200, 200, 429, 429, 429, 429]
    # The owner's refused calls did not spend the organization's budget.
    statuses = [
        client.get("/api/v1/queues", headers=colleague.headers).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_limits_cost_one_redis_round_trip_per_request(
    client: FlaskClient, owner: Account, redis_server: RedisProcess
) -> None:
    key = key_headers(create_key(client, owner, ["queue:read"]))
    _tighten(client, owner, "500 per minute")
    client.get("/api/v1/queues", headers=key)  # scripts loaded, key used once
    sent = commands_sent(redis_server.url, lambda: client.get("/api/v1/queues", headers=key))
    assert sent == ["EVALSHA"]
