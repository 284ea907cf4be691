"""Every error answer of the API becomes its exception class, with message and details."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import httpx
import pytest
from flask import Flask

import taskforge_client as tfc
from app.api.app import create_app
from app.config import Settings
from app.redis_server import free_port
from tests.client.conftest import PASSWORD, Signup
from tests.support.tokens import mint


def test_validation_error_carries_field_errors(wsgi_client: Signup) -> None:
    with pytest.raises(tfc.ValidationError) as caught:
        wsgi_client.client.queues.create("x" * 101, priority=10)
    error = caught.value
    assert error.status_code == 400
    assert set(error.errors) == {"name", "priority"}
    assert "Validation failed" in error.message


def test_unauthenticated_without_or_with_bad_credentials(app: Flask) -> None:
    transport = httpx.WSGITransport(app=app)
    with (
        tfc.TaskForge("http://testserver", http_transport=transport) as anonymous,
        pytest.raises(tfc.Unauthenticated) as caught,
    ):
        anonymous.queues.list()
    assert caught.value.status_code == 401
    with (
        tfc.TaskForge("http://testserver", api_key="tf_bad_key", http_transport=transport) as bad,
        pytest.raises(tfc.Unauthenticated),
    ):
        bad.jobs.list()


def test_bad_login_is_unauthenticated(wsgi_client: Signup) -> None:
    with pytest.raises(tfc.Unauthenticated):
        wsgi_client.client.auth.login(wsgi_client.email, PASSWORD + "!")


def test_permission_denied_for_a_key_without_the_scope(app: Flask, wsgi_client: Signup) -> None:
    created = wsgi_client.client.api_keys.create("reader", ["job:read"])
    transport = httpx.WSGITransport(app=app)
    with tfc.TaskForge("http://testserver", api_key=created.key, http_transport=transport) as key:
        assert key.jobs.list().total == 0
        with pytest.raises(tfc.PermissionDenied) as caught:
            key.queues.create("nope")
    assert caught.value.status_code == 403


def test_not_found_for_missing_and_foreign_objects(
    wsgi_client: Signup, signup: Callable[..., Signup], app: Flask
) -> None:
    tf = wsgi_client.client
    with pytest.raises(tfc.NotFound):
        tf.jobs.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(tfc.NotFound):
        tf.queues.by_name("absent")
    other = signup("http://testserver", http_transport=httpx.WSGITransport(app=app))
    foreign = other.client.queues.create("theirs")
    with pytest.raises(tfc.NotFound):
        tf.queues.get(foreign.id)


def test_conflict_for_duplicates_and_forbidden_transitions(wsgi_client: Signup) -> None:
    tf = wsgi_client.client
    queue = tf.queues.create("emails")
    with pytest.raises(tfc.Conflict) as caught:
        tf.queues.create("emails")
    assert caught.value.status_code == 409
    job = tf.jobs.submit(queue, "echo", 1)
    tf.jobs.cancel(job)
    with pytest.raises(tfc.Conflict):
        tf.jobs.cancel(job)
    with pytest.raises(tfc.Conflict):
        tf.jobs.retry(job)


def test_payload_too_large(app: Flask, signup: Callable[..., Signup], settings: Settings) -> None:
    small = create_app(settings.replace(max_content_length=2048))
    owner = signup("http://testserver", http_transport=httpx.WSGITransport(app=small))
    queue = owner.client.queues.create("big")
    with pytest.raises(tfc.PayloadTooLarge) as caught:
        owner.client.jobs.submit(queue, "echo", "x" * 4096)
    assert caught.value.status_code == 413


def test_unsupported_media_type(wsgi_client: Signup) -> None:
    with pytest.raises(tfc.UnsupportedMediaType) as caught:
        wsgi_client.client.request(
            "POST", "queues", content=b"name=x", headers={"Content-Type": "text/plain"}
        )
    assert caught.value.status_code == 415


def test_rate_limited_carries_retry_after(app: Flask, wsgi_client: Signup) -> None:
    tf = wsgi_client.client
    tf.request(
        "PATCH",
        f"organizations/{wsgi_client.organization_id}",
        json={"settings": {"rate_limit": "1 per minute"}},
    )
    no_retries = tfc.TaskForge(
        "http://testserver",
        token=tf.credentials.access_token,
        retry=tfc.RetryPolicy(max_retry_after=0),
        http_transport=httpx.WSGITransport(app=app),
    )
    with pytest.raises(tfc.RateLimited) as caught:
        for _ in range(3):
            no_retries.queues.list()
    assert caught.value.status_code == 429
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 60


def test_unavailable_when_redis_is_down(settings: Settings, wsgi_client: Signup) -> None:
    down = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    token = mint(down, "00000000-0000-0000-0000-000000000000", expires_in=dt.timedelta(minutes=1))
    transport = httpx.WSGITransport(app=down)
    no_retries = tfc.RetryPolicy(attempts=1)
    with (
        tfc.TaskForge(
            "http://testserver", token=token, retry=no_retries, http_transport=transport
        ) as tf,
        pytest.raises(tfc.Unavailable) as caught,
    ):
        tf.queues.list()
    assert caught.value.status_code == 503
    assert isinstance(caught.value, tfc.ServerError)


def test_an_answer_that_is_not_the_api_s_json_still_maps(app: Flask) -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    transport = httpx.MockTransport(gateway)
    with (
        tfc.TaskForge(
            "http://gw", retry=tfc.RetryPolicy(attempts=1), http_transport=transport
        ) as tf,
        pytest.raises(tfc.Unavailable) as caught,
    ):
        tf.queues.list()
    assert caught.value.status_code == 502
    assert "Bad Gateway" in caught.value.message
