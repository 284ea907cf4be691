"""Many writers at once through the REST API, and the SQLite writer turn they take.

On SQLite every write transaction takes the host's writer turn (``app.db``) from its
first write to the end of its ``COMMIT``; the outbox publishes after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import get_engine, session_scope, sqlite_writer
from app.models import Job
from app.services import outbox
from app.services.outbox import Dispatch, Staged
from tests.conftest import Account
from tests.support.races import inserts_meet
from tests.support.writer_turns import taken_elsewhere

THREADS = 16
SUBMITS = 8
# Generous: a loaded 2-core machine, 16 request threads, one writer at a time.
WAIT_SECONDS = 120.0


def _run_together(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run each call in a daemon thread at once; their results, or a failure after the wait.

    Daemon threads: a request stuck on a leaked turn fails the test instead of
    keeping the test process alive.
    """
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    done = threading.Semaphore(0)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)
        finally:
            done.release()

    for index in range(len(calls)):
        threading.Thread(target=run, args=(index,), daemon=True).start()
    finished = sum(done.acquire(timeout=WAIT_SECONDS) for _ in calls)
    if errors:
        raise errors[0]
    assert finished == len(calls), f"{len(calls) - finished} caller(s) never finished"
    return results


def _sqlite_only(settings: Settings) -> None:
    if get_engine(settings.database_url).dialect.name != "sqlite":
        pytest.skip("PostgreSQL's writers take no turns")


def _jobs(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def test_concurrent_submits_all_succeed_and_are_counted_exactly(
    app: Flask, client: FlaskClient, owner: Account, queue: dict
) -> None:
    barrier = threading.Barrier(THREADS, timeout=WAIT_SECONDS)

    def submitter(n: int) -> Callable[[], list[int]]:
        def submit() -> list[int]:
            statuses = []
            with app.test_client() as own:
                barrier.wait()
                for i in range(SUBMITS):
                    # Every thread's first submit carries one shared key: one job for all.
                    headers = (
                        {**owner.headers, "Idempotency-Key": "shared"} if i == 0 else owner.headers
                    )
                    response = own.post(
                        "/api/v1/jobs",
                        json={"queue_id": queue["id"], "job_type": "echo", "payload": [n, i]},
                        headers=headers,
                    )
                    statuses.append(response.status_code)
            return statuses

        return submit

    answers = _run_together([submitter(n) for n in range(THREADS)])
    assert answers == [[201] * SUBMITS] * THREADS
    expected = THREADS * (SUBMITS - 1) + 1
    counts = client.get("/api/v1/jobs/counts", headers=owner.headers).json
    assert (counts["pending_count"], counts["total_count"]) == (expected, expected)
    listed = client.get("/api/v1/jobs", headers=owner.headers).json
    assert listed["pagination"]["total"] == expected


def test_a_submit_waits_for_the_writer_turn_and_publishes_after_it(
    app: Flask, owner: Account, queue: dict, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sqlite_only(settings)
    engine = get_engine(settings.database_url)
    free_at_publish: list[bool] = []

    class TurnWatchingPublisher:
        """Record whether another writer could take the turn while the outbox publishes."""

        def __call__(self, staged: Sequence[Staged]) -> None:
            free_at_publish.append(taken_elsewhere(engine).wait(WAIT_SECONDS))

        def send(self, items: Sequence[Dispatch]) -> list[Dispatch]:
            return list(items)

    monkeypatch.setattr(outbox, "_publisher", TurnWatchingPublisher())

    def submit() -> int:
        with app.test_client() as own:
            body = {"queue_id": queue["id"], "job_type": "echo"}
            return own.post("/api/v1/jobs", json=body, headers=owner.headers).status_code

    assert submit() == 201  # warm: the next submit's time is its wait for the turn
    answered: list[int] = []
    submitter = threading.Thread(target=lambda: answered.append(submit()), daemon=True)
    with sqlite_writer(engine):
        submitter.start()
        submitter.join(0.5)
        assert _jobs(settings) == 1, "the submit waits while another writer holds the turn"
    submitter.join(WAIT_SECONDS)
    assert answered == [201]
    assert _jobs(settings) == 2
    assert free_at_publish == [True, True], "the outbox published while the turn was held"


def test_a_lost_race_answered_409_gives_the_turn_back(
    app: Flask, owner: Account, settings: Settings
) -> None:
    _sqlite_only(settings)

    def create() -> int:
        with app.test_client() as own:
            return own.post(
                "/api/v1/queues", json={"name": "twin"}, headers=owner.headers
            ).status_code

    with inserts_meet(settings.database_url, "queues") as barrier:
        answers = _run_together([create, create])
    assert not barrier.broken, "both requests reached the insert"
    assert sorted(answers) == [201, 409]
    assert taken_elsewhere(get_engine(settings.database_url)).wait(WAIT_SECONDS)
