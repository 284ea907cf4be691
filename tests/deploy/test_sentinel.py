"""TaskForge on Redis behind Sentinels, across a failover of the master.

A real master, replica and three Sentinels (tests/support/sentinel.py); the API,
a real Celery worker, the token store, rate limits and the broker all reach Redis
through ``REDIS_URL=sentinel://…`` and ``TASKFORGE_REDIS_SENTINEL_MASTER``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from flask.testing import FlaskClient

from app.config import Settings, load_settings
from app.redis_client import connect
from tests.conftest import METRICS_TOKEN, PASSWORD, Account
from tests.support.sentinel import MASTER_NAME, SentinelCluster
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path_factory.mktemp("sentinel"))
    yield cluster
    cluster.stop()


@pytest.fixture
def settings(database_url: str, sentinels: SentinelCluster) -> Settings:
    """The suite's settings, with Redis reached through the Sentinels."""
    return load_settings(
        database_url=database_url,
        redis_url=sentinels.url,
        redis_sentinel_master=MASTER_NAME,
        rate_limit_default="100000 per minute",
        rate_limit_login="100000 per minute",
        rate_limit_register="100000 per hour",
        metrics_token=METRICS_TOKEN,
    )


def _answers(call: Callable[[], object]) -> bool:
    try:
        call()
    except redis.RedisError:
        return False
    return True


def test_a_client_follows_the_master_across_a_failover(sentinels: SentinelCluster) -> None:
    client = connect(sentinels.url, sentinel_master=MASTER_NAME)
    client.set("before", "1")
    old = sentinels.master_port()

    new = sentinels.fail_over()

    assert new != old
    wait_for(lambda: _answers(lambda: client.set("after", "1")), 30, "no write after failover")
    assert client.get("before") == b"1"  # replicated before the switch
    assert client.connection_pool.get_master_address()[1] == new  # type: ignore[attr-defined]
    client.close()


def _submit_and_wait(
    client: FlaskClient, owner: Account, queue_id: str, worker: WorkerProcess
) -> None:
    def submitted() -> str | None:
        response = client.post(
            "/api/v1/jobs",
            json={"queue_id": queue_id, "job_type": "echo", "payload": {"n": 1}},
            headers=owner.headers,
        )
        return response.json["id"] if response.status_code == 201 else None

    job_ids: list[str] = []
    wait_for(lambda: job_ids.append(submitted() or "") or job_ids[-1], 30, "submit kept failing")
    job_id = job_ids[-1]
    wait_for(
        lambda: (
            client.get(f"/api/v1/jobs/{job_id}", headers=owner.headers).json["status"]
            == "succeeded"
        ),
        60,
        f"job {job_id} did not succeed:\n{worker.log()[-3000:]}",
        interval=0.2,
    )


def test_jobs_run_and_logins_work_before_and_after_a_failover(
    client: FlaskClient,
    owner: Account,
    queue: dict,
    start_worker: Callable[..., WorkerProcess],
    sentinels: SentinelCluster,
) -> None:
    worker = start_worker("-P", "solo")
    _submit_and_wait(client, owner, queue["id"], worker)

    sentinels.fail_over()

    # Login spends the per-route limit (flask-limiter) and writes a refresh token
    # family (the token store): both reach the new master.
    wait_for(
        lambda: (
            client.post(
                "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
            ).status_code
            == 200
        ),
        30,
        "login kept failing after the failover",
        interval=0.2,
    )
    _submit_and_wait(client, owner, queue["id"], worker)
