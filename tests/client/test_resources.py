"""The SDK's resource calls against the in-process API, on both database backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import taskforge_client as tfc
from taskforge_client import jobs as jobs_module
from tests.client.conftest import Signup


def test_queue_calls(wsgi_client: Signup) -> None:
    tf = wsgi_client.client
    queue = tf.queues.create(
        "mail", description="outbound", priority=3, settings={"max_attempts": 4}
    )
    assert (queue.description, queue.priority) == ("outbound", 3)
    assert queue.settings["max_attempts"] == 4
    assert tf.queues.by_name("mail") == tf.queues.get(queue.id) == queue
    renamed = tf.queues.update(queue, name="post", description=None)
    assert (renamed.name, renamed.description, renamed.priority) == ("post", None, 3)
    assert tf.queues.update(queue, priority=5).description is None
    tf.queues.pause(queue)
    assert tf.queues.get(queue).is_active is False
    tf.queues.resume(queue)
    names = [f"q{i:03}" for i in range(105)]
    for name in names:
        tf.queues.create(name)
    assert tf.queues.list(limit=100).pages == 2
    assert [q.name for q in tf.queues.iterate()] == ["post", *names]
    tf.queues.delete(queue)
    with pytest.raises(tfc.NotFound):
        tf.queues.get(queue)


def test_jobs_are_walked_by_cursor_and_counted_in_one_call(
    wsgi_client: Signup, monkeypatch: pytest.MonkeyPatch
) -> None:
    tf = wsgi_client.client
    queue = tf.queues.create("walked")
    jobs = [tf.jobs.submit(queue, "echo", n) for n in range(5)]
    monkeypatch.setattr(jobs_module, "MAX_PAGE_SIZE", 2)
    assert [j.id for j in tf.jobs.iterate(queue=queue)] == [j.id for j in reversed(jobs)]
    first = tf.jobs.list(limit=3)
    rest = tf.jobs.list(limit=3, after=first.next_after)
    assert [j.id for j in first.items + rest.items] == [j.id for j in reversed(jobs)]
    assert rest.next_after is None and rest.total == 5
    tf.jobs.cancel(jobs[0])
    counts = tf.jobs.counts()
    assert (counts[tfc.JobStatus.PENDING], counts[tfc.JobStatus.CANCELLED]) == (4, 1)


def test_job_calls(wsgi_client: Signup) -> None:
    tf = wsgi_client.client
    queue = tf.queues.create("work")
    jobs = [tf.jobs.submit(queue, "echo", n, priority=n % 10, max_attempts=2) for n in range(3)]
    assert [j.id for j in tf.jobs.iterate(queue=queue)] == [j.id for j in reversed(jobs)]
    assert tf.jobs.list(status=tfc.JobStatus.PENDING, limit=2).pages == 2
    assert tf.jobs.get(jobs[0]).max_attempts == 2
    stats = tf.jobs.stats(jobs[0])
    assert (stats.status, stats.attempts) == (tfc.JobStatus.PENDING, [])
    with pytest.raises(ValueError, match="timezone"):
        tf.jobs.submit(queue, "echo", scheduled_for=datetime(2030, 1, 1))
    later = tf.jobs.submit(queue, "echo", scheduled_for=datetime(2030, 1, 1, tzinfo=UTC))
    assert later.status is tfc.JobStatus.SCHEDULED
    assert later.scheduled_for == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(tfc.WaitTimeout):
        tf.jobs.wait(jobs[0], timeout=0.3)


def test_worker_and_api_key_calls(wsgi_client: Signup) -> None:
    tf = wsgi_client.client
    created = tf.request("POST", "workers", json={"name": "w1", "max_concurrent_jobs": 2}).json()
    [worker] = tf.workers.list(status="online").items
    assert worker.id == created["id"] and tf.workers.get(worker).name == "w1"
    drained = tf.workers.drain(worker)
    assert drained.drain_mode is True
    key = tf.api_keys.create("k", ["job:read"])
    assert tf.api_keys.get(key.id).prefix == key.prefix and tf.api_keys.get(key).revoked_at is None
    tf.api_keys.revoke(key)
    assert tf.api_keys.get(key).revoked_at is not None
    assert tf.monitor.workers() == [] or all(
        isinstance(w, tfc.LiveWorker) for w in tf.monitor.workers()
    )
