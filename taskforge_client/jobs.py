"""/jobs: submit (idempotent), list, get, cancel, retry, stats, and waiting for the end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from taskforge_client.errors import TaskForgeError, WaitTimeout
from taskforge_client.events import EventFeed
from taskforge_client.models import (
    Job,
    JobStats,
    JobStatus,
    Page,
    Queue,
    TaskEvent,
    id_of,
    load,
    load_page,
)
from taskforge_client.transport import Transport, present

JobRef = str | Job
MAX_PAGE_SIZE = 100
POLL_START = 0.2
POLL_MAX = 2.0
FOLLOW_POLL = 2.0
FOLLOW_CONNECT_WAIT = 10.0


def new_idempotency_key() -> str:
    """A fresh key: every submit sends one, so a retried submit makes one job."""
    return str(uuid.uuid4())


class Jobs:
    """The organization's jobs."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def submit(
        self,
        queue: str | Queue | None,
        job_type: str,
        payload: Any = None,
        *,
        queue_id: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        scheduled_for: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a job to ``queue`` (a name or a ``Queue``; or give ``queue_id``).

        The request carries ``Idempotency-Key`` (``idempotency_key``, or a new one), so
        the client's own retries never make a second job, and a caller that retries with
        the same key gets the same job back.
        """
        if scheduled_for is not None and scheduled_for.utcoffset() is None:
            raise ValueError("scheduled_for needs a timezone, e.g. datetime.now(UTC)")
        body = present(
            queue_name=queue if isinstance(queue, str) else None,
            queue_id=queue.id if isinstance(queue, Queue) else queue_id,
            job_type=job_type,
            priority=priority,
            max_attempts=max_attempts,
            scheduled_for=scheduled_for.isoformat() if scheduled_for else None,
        )
        body["payload"] = payload
        key = idempotency_key or new_idempotency_key()
        answer = self._transport.call(
            "POST", "jobs", json=body, headers={"Idempotency-Key": key}, retry_safe=True
        )
        return load(Job, answer)

    def get(self, job: JobRef) -> Job:
        """Get a job with its result or error."""
        return load(Job, self._transport.call("GET", f"jobs/{id_of(job)}"))

    def list(
        self,
        *,
        status: JobStatus | str | None = None,
        queue: str | Queue | None = None,
        page: int = 1,
        limit: int = 10,
        after: str | None = None,
    ) -> Page[Job]:
        """One page of jobs, newest first; ``queue`` is a queue id or a ``Queue``.

        ``after`` (a page's ``next_after``) starts right after that page, at the
        first page's cost however deep; ``page`` then stays 1.
        """
        params = {
            "status": str(status) if status else None,
            "queue_id": id_of(queue) if queue else None,
            "page": page,
            "limit": limit,
            "after": after,
        }
        return load_page(Job, "jobs", self._transport.call("GET", "jobs", params=params))

    def counts(self) -> dict[JobStatus, int]:
        """The organization's jobs per status, exactly, in one call."""
        body = self._transport.call("GET", "jobs/counts")
        return {status: int(body[f"{status.value}_count"]) for status in JobStatus}

    def iterate(
        self, *, status: JobStatus | str | None = None, queue: str | Queue | None = None
    ) -> Iterator[Job]:
        """Every job matching the filters, newest first, page after page (by cursor)."""
        after = None
        while True:
            batch = self.list(status=status, queue=queue, after=after, limit=MAX_PAGE_SIZE)
            yield from batch.items
            if batch.next_after is None:
                return
            after = batch.next_after

    def cancel(self, job: JobRef) -> None:
        """Cancel a pending or scheduled job (``Conflict`` in any other state)."""
        self._transport.call("POST", f"jobs/{id_of(job)}/cancel")

    def retry(self, job: JobRef) -> None:
        """Queue a failed job again with a fresh attempt budget (``Conflict`` otherwise)."""
        self._transport.call("POST", f"jobs/{id_of(job)}/retry")

    def stats(self, job: JobRef) -> JobStats:
        """Every attempt of a job with its worker, timings and error."""
        return load(JobStats, self._transport.call("GET", f"jobs/{id_of(job)}/stats"))

    def wait(self, job: JobRef, *, timeout: float = 60.0) -> Job:
        """Poll until the job has ended; raise ``WaitTimeout`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        interval = POLL_START
        while True:
            current = self.get(job)
            if current.status.is_terminal:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"job {current.id} is still {current.status} after {timeout:g} s")
            time.sleep(min(interval, left))
            interval = min(interval * 2, POLL_MAX)

    def follow(
        self, job: JobRef, *, timeout: float | None = None, poll: float = FOLLOW_POLL
    ) -> Iterator[Job | TaskEvent]:
        """Yield the job at each change of state, and its task events, until it ends.

        Events come live from the event stream, which is open before the job is first
        read; the job is read again after each of its events and every ``poll`` seconds,
        since some changes (a cancel) raise no event and events sent while the stream
        reconnects are lost.  ``WaitTimeout`` after ``timeout`` seconds, if given.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[JobStatus, int] | None = None
        with EventFeed(self._transport, kinds=("task",)) as feed:
            # Without a stream in time, polling alone still sees the job to its end.
            feed.wait_connected(FOLLOW_CONNECT_WAIT)
            while True:
                current = self.get(job)
                if (current.status, current.attempt_count) != last:
                    last = (current.status, current.attempt_count)
                    yield current
                if current.status.is_terminal:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"job {current.id} is still {current.status}")
                yield from _events_of(feed, current.id, poll, deadline)


def _events_of(
    feed: EventFeed, job_id: str, poll: float, deadline: float | None
) -> Iterator[TaskEvent]:
    """Yield the first event of ``job_id`` that arrives within ``poll`` seconds, if any."""
    until = time.monotonic() + poll
    if deadline is not None:
        until = min(until, deadline)
    while (left := until - time.monotonic()) > 0:
        try:
            event = feed.get(left)
        except TaskForgeError:
            # The stream is gone for good (e.g. the server's stream slots stay full):
            # reading the job every ``poll`` seconds still sees it to its end.
            time.sleep(left)
            return
        if event is None:
            return
        if isinstance(event, TaskEvent) and event.job_id == job_id:
            yield event
            return
