"""``app.heap``: a process's start-up objects leave the collector's full passes.

Each check runs in a fresh interpreter: freezing the test process itself would keep
its later cyclic garbage for ever.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import PROJECT_ROOT
from tests.conftest import Account
from tests.support.api import create_queue, submit_job
from tests.support.workers import WorkerProcess, wait_for

# Build the REST app as a gunicorn worker does, then freeze; report what the
# collector's oldest generation and its permanent generation hold before and after.
_FREEZE_AN_APP = """
import gc, json
from app.api.app import create_app
from app.config import load_settings
from app.heap import freeze_startup_objects

create_app(load_settings(database_url="sqlite://", redis_url="redis://127.0.0.1:1/0"))
before = len(gc.get_objects(generation=2))
returned = freeze_startup_objects()
print(json.dumps({
    "before": before,
    "after": len(gc.get_objects(generation=2)),
    "returned": returned,
    "frozen": gc.get_freeze_count(),
}))
"""


def test_freezing_takes_the_start_up_objects_out_of_full_collections() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FREEZE_AN_APP],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    counts = json.loads(done.stdout.strip().splitlines()[-1])

    # An app's start-up leaves tens of thousands of long-lived objects behind...
    assert counts["before"] > 10_000
    # ...and afterwards a full pass walks none of them: they are all frozen.
    assert counts["after"] < counts["before"] / 100
    assert counts["returned"] == counts["frozen"] > 10_000


@pytest.mark.slow
@pytest.mark.real_workers
def test_the_pool_processes_running_jobs_inherit_the_workers_frozen_objects(
    client: FlaskClient,
    owner: Account,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = create_queue(client, owner.headers, "frozen")
    monkeypatch.setenv("TASKFORGE_HANDLER_MODULES", "tests.support.handlers")
    worker = start_worker("-P", "prefork", "-c", "1")
    job = submit_job(client, owner.headers, queue, job_type="test.gc_frozen", max_attempts=1)

    def finished() -> dict[str, Any]:
        body = client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json
        assert body is not None
        return dict(body)

    wait_for(lambda: finished()["status"] == "succeeded", 60, worker.log()[-3000:])
    # The pool process was forked after the worker's start-up froze its objects.
    assert finished()["result"]["frozen"] > 10_000
