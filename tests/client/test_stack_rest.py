"""The REST SDK against real processes: gunicorn, Redis, a Celery worker, the monitor."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

import taskforge_client as tfc
from taskforge_client.models import TaskEvent, Tokens
from tests.client.conftest import JWT_SECRET, PASSWORD, Signup, Stack
from tests.support.proxy import faulty_proxy
from tests.support.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]


def test_readme_flow_end_to_end(stack: Stack) -> None:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    with tfc.TaskForge(stack.url) as tf:
        registered = tf.auth.register(email, PASSWORD, "Acme")
        tokens = tf.auth.login(email, PASSWORD)
        assert tokens.token_type == "Bearer" and tokens.refresh_token
        assert tf.auth.validate().organization_id == registered.organization_id
        queue = tf.queues.create("emails")
        job = tf.jobs.submit("emails", "echo", {"hello": "world"})
        assert job.status is tfc.JobStatus.PENDING and job.queue_id == queue.id
        done = tf.jobs.wait(job, timeout=60)
        assert done.status is tfc.JobStatus.SUCCEEDED, stack.logs()
        assert done.result == {"hello": "world"}
        assert done.started_at is not None and done.completed_at >= done.started_at
        stats = tf.jobs.stats(job)
        assert [a.status for a in stats.attempts] == ["succeeded"]
        assert tf.queues.stats(queue).succeeded_count == 1
        assert [j.id for j in tf.jobs.list(status="succeeded", queue=queue).items] == [job.id]
        wait_for(
            lambda: any(t.job_id == job.id for t in tf.monitor.tasks(queue=queue)),
            30,
            f"the monitor never showed the job:\n{stack.logs()}",
        )
        assert [q.name for q in tf.monitor.queues()] == ["emails"]


def test_a_submit_whose_answer_is_lost_is_retried_into_one_job(
    stack: Stack, signup: Callable[..., Signup]
) -> None:
    with faulty_proxy(stack.url) as proxy:
        owner = signup(proxy.url)
        queue = owner.client.queues.create("once")
        proxy.drop_next_answer()
        job = owner.client.jobs.submit(queue, "echo", {"n": 1})
        assert proxy.count("POST", "/api/v1/jobs") == 2  # the lost answer, then the retry
        assert [j.id for j in owner.client.jobs.list(queue=queue).items] == [job.id]

        # Without retries the same fault surfaces, and the job exists all the same:
        # exactly the case the idempotency key makes safe to retry.
        key = "caller-chosen-key"
        once = tfc.TaskForge(
            proxy.url, token=owner.client.credentials.access_token, retry=tfc.RetryPolicy(1)
        )
        proxy.drop_next_answer()
        with pytest.raises(tfc.TransportError):
            once.jobs.submit(queue, "echo", 2, idempotency_key=key)
        again = once.jobs.submit(queue, "echo", 2, idempotency_key=key)
        assert owner.client.jobs.list(queue=queue).total == 2
        assert again.payload == 2
        once.close()


def test_gateway_errors_are_retried_only_when_that_is_safe(
    stack: Stack, signup: Callable[..., Signup]
) -> None:
    with faulty_proxy(stack.url) as proxy:
        owner = signup(proxy.url)
        queue = owner.client.queues.create("gateway")
        for status in (502, 503, 504):
            proxy.fail_next(status)
            assert owner.client.queues.get(queue).id == queue.id
        proxy.fail_next(503)
        job = owner.client.jobs.submit(queue, "echo", 1)  # keyed: safe to send again
        before = proxy.count("POST", f"/api/v1/jobs/{job.id}/cancel")
        proxy.fail_next(503)
        with pytest.raises(tfc.Unavailable):
            owner.client.jobs.cancel(job)  # not idempotent: sent once
        assert proxy.count("POST", f"/api/v1/jobs/{job.id}/cancel") == before + 1
        proxy.fail_next(400)
        with pytest.raises(tfc.ValidationError):
            owner.client.queues.get(queue)  # a 4xx is never retried
        assert proxy.count("GET", f"/api/v1/queues/{queue.id}") == 3 * 2 + 1


def _expired_copy(access_token: str) -> str:
    """The same access token, but expired a minute ago (signed with the stack's key)."""
    claims = jwt.decode(access_token, options={"verify_signature": False})
    now = datetime.now(UTC)
    claims.update(
        jti=str(uuid.uuid4()),
        iat=now - timedelta(minutes=20),
        nbf=now - timedelta(minutes=20),
        exp=now - timedelta(minutes=1),
    )
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def test_an_expired_access_token_is_refreshed_once_and_handed_over(
    stack: Stack, signup: Callable[..., Signup]
) -> None:
    owner = signup(stack.url)
    credentials = owner.client.credentials
    expired = _expired_copy(credentials.access_token or "")
    saved: list[Tokens] = []
    with tfc.TaskForge(
        stack.url, token=expired, refresh_token=credentials.refresh_token, on_tokens=saved.append
    ) as tf:
        assert tf.queues.list().total == 0
        assert tf.queues.create("after-refresh").name == "after-refresh"
        [tokens] = saved
        assert tokens.access_token == tf.credentials.access_token != expired
        assert tokens.refresh_token and tokens.refresh_token != credentials.refresh_token

    # Without a refresh token, or with a used one, the 401 stands.
    with tfc.TaskForge(stack.url, token=expired) as tf, pytest.raises(tfc.Unauthenticated):
        tf.queues.list()
    with (
        tfc.TaskForge(stack.url, token=expired, refresh_token=credentials.refresh_token) as tf,
        pytest.raises(tfc.Unauthenticated),
    ):
        tf.queues.list()


class Recorder(httpx.HTTPTransport):
    """The real network transport, noting each 429's Retry-After."""

    def __init__(self) -> None:
        super().__init__()
        self.retry_after: list[float] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if response.status_code == 429:
            self.retry_after.append(float(response.headers["Retry-After"]))
        return response


def test_rate_limited_requests_wait_as_long_as_retry_after_says(
    stack: Stack, signup: Callable[..., Signup]
) -> None:
    owner = signup(stack.url)
    owner.client.request(
        "PATCH",
        f"organizations/{owner.organization_id}",
        json={"settings": {"rate_limit": "3 per 3 seconds"}},
    )
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    recorder = Recorder()
    token = owner.client.credentials.access_token
    policy = tfc.RetryPolicy(attempts=3, max_retry_after=5, sleep=sleep)
    with tfc.TaskForge(stack.url, token=token, retry=policy, http_transport=recorder) as tf:
        for _ in range(5):
            tf.queues.list()
        assert recorder.retry_after, "the limit never answered 429"
        assert slept == recorder.retry_after
        assert all(1 <= seconds <= 3 for seconds in slept)

    # A Retry-After beyond the policy's bound is the caller's to wait: raised at once.
    impatient = tfc.RetryPolicy(max_retry_after=0.5, sleep=sleep)
    slept.clear()
    with (
        tfc.TaskForge(stack.url, token=token, retry=impatient) as tf,
        pytest.raises(tfc.RateLimited) as caught,
    ):
        for _ in range(10):
            tf.queues.list()
    assert caught.value.retry_after and caught.value.retry_after >= 1
    assert slept == []


def test_events_and_follow_see_a_job_through(stack: Stack, signup: Callable[..., Signup]) -> None:
    tf = signup(stack.url).client
    queue = tf.queues.create("watched")
    with tf.event_feed(kinds=("task",)) as feed:
        assert feed.wait_connected(30)
        job = tf.jobs.submit(queue, "sleep", {"seconds": 0.2})
        states: list[str] = []
        deadline = time.monotonic() + 60
        while "succeeded" not in states and time.monotonic() < deadline:
            event = feed.get(deadline - time.monotonic())
            if isinstance(event, TaskEvent) and event.job_id == job.id:
                states.append(event.state)
    assert states[-1:] == ["succeeded"], stack.logs()
    assert "started" in states

    # follow reads the job only once its stream is open: no event of the run is missed.
    tf.queues.pause(queue)
    following = tf.jobs.follow(tf.jobs.submit(queue, "echo", "hi"), timeout=60)
    first = next(following)
    tf.queues.resume(queue)
    followed = [first, *following]
    statuses = [item.status for item in followed if isinstance(item, tfc.Job)]
    assert statuses[0] is tfc.JobStatus.PENDING and statuses[-1] is tfc.JobStatus.SUCCEEDED
    events = [item.state for item in followed if isinstance(item, TaskEvent)]
    assert events and set(events) <= {"received", "started", "succeeded"}, followed


def test_follow_ends_on_a_cancel_that_raises_no_event(
    stack: Stack, signup: Callable[..., Signup]
) -> None:
    tf = signup(stack.url).client
    queue = tf.queues.create("held")
    tf.queues.pause(queue)
    job = tf.jobs.submit(queue, "echo", 1)
    following = tf.jobs.follow(job, timeout=60, poll=0.5)
    first = next(following)
    assert isinstance(first, tfc.Job) and first.status is tfc.JobStatus.PENDING
    tf.jobs.cancel(job)
    rest = list(following)
    assert isinstance(rest[-1], tfc.Job) and rest[-1].status is tfc.JobStatus.CANCELLED


def test_an_api_key_acts_within_its_scopes(stack: Stack, signup: Callable[..., Signup]) -> None:
    owner = signup(stack.url).client
    queue = owner.queues.create("keyed")
    created = owner.api_keys.create("ci", ["queue:read", "job:read", "job:write"])
    assert created.key.startswith("tf_")
    assert created.key not in repr(created)
    with tfc.TaskForge(stack.url, api_key=created.key) as ci:
        job = ci.jobs.wait(ci.jobs.submit("keyed", "echo", [1, 2]), timeout=60)
        assert job.result == [1, 2] and job.queue_id == queue.id
        with pytest.raises(tfc.PermissionDenied):
            ci.queues.delete(queue)
    assert [k.name for k in owner.api_keys.list().items] == ["ci"]
    owner.api_keys.revoke(created)
    with tfc.TaskForge(stack.url, api_key=created.key) as ci, pytest.raises(tfc.Unauthenticated):
        ci.jobs.list()


def test_logout_revokes_the_session(stack: Stack, signup: Callable[..., Signup]) -> None:
    tf = signup(stack.url).client
    token = tf.credentials.access_token
    tf.auth.logout()
    assert tf.credentials.access_token is None
    with tfc.TaskForge(stack.url, token=token) as old, pytest.raises(tfc.Unauthenticated):
        old.queues.list()
