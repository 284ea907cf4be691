"""The taskforge_* counterparts of Flower's metric families, their bound, and the dashboard."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.config import Settings
from app.monitor.events import EventHandler
from app.monitor.lookups import Lookups
from app.services import live_state
from app.services.live_state import LiveState
from tests.conftest import METRICS_AUTH, Account
from tests.support.monitor import create_queue, submit

HOST = "w@h"
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "taskforge.json"
# Flower 2.2's families (flower/events.py) and their taskforge_* counterparts.
FLOWER_FAMILIES = {
    "flower_events_total": "taskforge_events_total",
    "flower_task_prefetch_time_seconds": "taskforge_task_prefetch_time_seconds",
    "flower_worker_prefetched_tasks": "taskforge_worker_prefetched_tasks",
    "flower_task_runtime_seconds": "taskforge_task_runtime_seconds",
    "flower_worker_online": "taskforge_worker_online",
    "flower_worker_number_of_currently_executing_tasks": (
        "taskforge_worker_number_of_currently_executing_tasks"
    ),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}


@pytest.fixture
def handler(settings: Settings) -> Iterator[EventHandler]:
    """An event handler on a fresh store (fresh writer memory)."""
    store = LiveState.from_url(settings.redis_url)
    yield EventHandler(store, Lookups(settings.database_url))
    store.close()


def scrape_text(client: FlaskClient) -> str:
    """The metrics scrape as text."""
    response = client.get("/api/v1/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def samples(text: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Sample (name, sorted labels) → value, parsed by prometheus_client's parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def event(handler: EventHandler, kind: str, job: dict[str, Any], at: float, **more: Any) -> None:
    """Feed one task event of the job's first attempt."""
    handler({"type": kind, "uuid": f"{job['id']}:0", "hostname": HOST, "timestamp": at, **more})


def labels(job_type: str, queue: dict[str, Any], **more: str) -> tuple[Any, ...]:
    """Sorted labels of a series of ``job_type`` on ``queue``."""
    return tuple(
        sorted(
            {
                "worker": HOST,
                "job_type": job_type,
                "queue": queue["name"],
                "queue_id": queue["id"],
                **more,
            }.items()
        )
    )


def test_each_flower_family_has_a_counterpart_with_job_type_and_queue(
    client: FlaskClient, owner: Account, queue: dict[str, Any], handler: EventHandler
) -> None:
    job = submit(client, owner, queue, "echo")
    at = time.time()
    event(handler, "task-received", job, at, name="taskforge.run_job")
    mid = samples(scrape_text(client))
    assert mid[("taskforge_worker_prefetched_tasks", labels("echo", queue))] == 1
    event(handler, "task-started", job, at + 0.25)
    running = samples(scrape_text(client))
    assert running[("taskforge_worker_prefetched_tasks", labels("echo", queue))] == 0
    assert running[("taskforge_task_prefetch_time_seconds", labels("echo", queue))] == 0.25
    key = ("taskforge_worker_number_of_currently_executing_tasks", labels("echo", queue))
    assert running[key] == 1
    event(handler, "task-succeeded", job, at + 1, result="'succeeded'", runtime=0.75)
    handler({"type": "worker-heartbeat", "hostname": HOST, "timestamp": time.time(), "freq": 2})
    done = samples(scrape_text(client))
    assert done[key] == 0
    runtime = labels("echo", queue, le="1.0")
    assert done[("taskforge_task_runtime_seconds_bucket", runtime)] == 1
    assert done[("taskforge_task_runtime_seconds_sum", labels("echo", queue))] == 0.75
    for kind in ("task-received", "task-started", "task-succeeded"):
        assert done[("taskforge_events_total", labels("echo", queue, type=kind))] == 1
    heartbeat = tuple(
        sorted(
            {
                "worker": HOST,
                "type": "worker-heartbeat",
                "job_type": "",
                "queue": "",
                "queue_id": "",
            }.items()
        )
    )
    assert done[("taskforge_events_total", heartbeat)] == 1
    assert done[("taskforge_worker_online", (("worker", HOST),))] == 1


def test_an_executing_task_whose_end_event_was_lost_is_pruned(
    client: FlaskClient, owner: Account, queue: dict[str, Any], handler: EventHandler
) -> None:
    job = submit(client, owner, queue, "echo")
    at = time.time() - 5
    event(handler, "task-received", job, at, name="taskforge.run_job")
    event(handler, "task-started", job, at)
    key = ("taskforge_worker_number_of_currently_executing_tasks", labels("echo", queue))
    assert samples(scrape_text(client))[key] == 1
    # inspect().active() no longer reports it: the end event was lost.
    handler.store.prune_active(HOST, running=set(), before=time.time())
    assert samples(scrape_text(client))[key] == 0


def test_series_beyond_the_bound_are_counted_as_other(
    client: FlaskClient,
    owner: Account,
    handler: EventHandler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live_state, "MAX_SERIES", 1)
    first = create_queue(client, owner, "first")
    second = create_queue(client, owner, "second")
    at = time.time()
    for queue in (first, second, first):
        event(
            handler,
            "task-received",
            submit(client, owner, queue, "echo"),
            at,
            name="taskforge.run_job",
        )
    scraped = samples(scrape_text(client))
    received = {
        dict(labels_)["job_type"] + "/" + dict(labels_)["queue"]: value
        for (name, labels_), value in scraped.items()
        if name == "taskforge_events_total" and dict(labels_)["type"] == "task-received"
    }
    assert received == {"echo/first": 2, "other/other": 1}


def test_the_default_collectors_are_scraped_in_multiprocess_mode_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    class Empty(metrics.Collector):
        def collect(self) -> Iterator[Any]:
            return iter(())

    text = metrics.render(Empty()).decode()  # type: ignore[arg-type]
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"process_resident_memory_bytes", "python_info", "python_gc_objects_collected"} <= names


def referenced_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (not functions, labels or keywords)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def test_the_grafana_dashboard_reads_only_scraped_metrics(
    client: FlaskClient, owner: Account, queue: dict[str, Any], handler: EventHandler
) -> None:
    job = submit(client, owner, queue, "echo")
    at = time.time()
    event(handler, "task-received", job, at, name="taskforge.run_job")
    event(handler, "task-started", job, at + 0.1)
    other = submit(client, owner, queue, "echo")
    event(handler, "task-received", other, at, name="taskforge.run_job")
    event(handler, "task-started", other, at + 0.1)
    event(handler, "task-succeeded", other, at + 1, result="'succeeded'", runtime=0.9)
    for outcome in ("'failed'", "'retrying'"):
        ended = submit(client, owner, queue, "echo")
        event(handler, "task-started", ended, at)
        event(handler, "task-succeeded", ended, at + 1, result=outcome, runtime=0.5)
    handler({"type": "worker-heartbeat", "hostname": HOST, "timestamp": time.time(), "freq": 2})
    exposed = {name for name, _ in samples(scrape_text(client))}
    assert set(FLOWER_FAMILIES.values()) <= {n.removesuffix("_bucket") for n in exposed}

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs, "the dashboard has no queries"
    used = set().union(*(referenced_metrics(e) for e in exprs))
    assert used - exposed == set(), f"not in the scrape: {sorted(used - exposed)}"
    assert {"taskforge_task_runtime_seconds_bucket", "taskforge_events_total"} <= used
    assert referenced_metrics('sum by (le) (rate(x_bucket{a="b"}[5m]))') == {"x_bucket"}
