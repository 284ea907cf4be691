"""Prometheus metrics: counters kept by each process, and cluster values read at scrape time.

Processes count their own requests (HTTP, gRPC) and submitted jobs.  Under
``make run`` every child shares ``PROMETHEUS_MULTIPROC_DIR``, so a scrape of any
API worker adds up all processes (prometheus_client's multiprocess mode).
Job outcomes, run and wait times come from the monitor's Redis counters (it sees
every worker's events), queue depth from the broker and workers by status from
SQL, all read when scraped by :class:`ClusterCollector`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.broker import BrokerProbe
from app.celery_names import job_queue_name
from app.db import session_scope
from app.models import Queue, Worker, WorkerStatus
from app.services.live_state import (
    HISTOGRAMS,
    OUTCOMES,
    SERIES_SEP,
    LiveState,
    is_alive,
)
from app.services.live_state import Histogram as StoredHistogram

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "taskforge_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "taskforge_http_request_duration_seconds",
    "Time to answer an HTTP request (to the first byte for streams).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
GRPC_REQUESTS = Counter(
    "taskforge_grpc_requests_total",
    "gRPC calls answered, by method and status code.",
    ["method", "code"],
)
GRPC_LATENCY = Histogram(
    "taskforge_grpc_request_duration_seconds",
    "Time to answer a gRPC call.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
JOBS_SUBMITTED = Counter(
    "taskforge_jobs_submitted_total",
    "Jobs accepted (counted once their transaction committed), by queue id.",
    ["queue"],
)

HISTOGRAM_HELP = {
    "run": ("taskforge_job_run_seconds", "Time an attempt ran on a worker, by queue id."),
    "wait": (
        "taskforge_job_wait_seconds",
        "Time from submit (or the scheduled time) to a job's first start, by queue id.",
    ),
}


def count_submitted(queue_ids: Iterable[Any]) -> None:
    """Count accepted jobs per queue."""
    for queue_id in queue_ids:
        JOBS_SUBMITTED.labels(queue=str(queue_id)).inc()


class ClusterCollector(Collector):
    """Values read when scraped: queue depth, workers, job outcomes and time histograms."""

    def __init__(self, database_url: str, broker: BrokerProbe, store: LiveState) -> None:
        self.database_url = database_url
        self.broker = broker
        self.store = store

    def collect(self) -> Iterator[Any]:
        """Yield every family; a backend that does not answer leaves its families out."""
        for family in (self._sql, self._monitor, self._flower):
            try:
                yield from family()
            except Exception:
                logger.warning("metrics: %s unavailable", family.__name__, exc_info=True)

    def _queue_names(self) -> dict[str, str]:
        with session_scope(self.database_url) as session:
            return {
                str(queue_id): name
                for queue_id, name in session.execute(select(Queue.id, Queue.name))
            }

    def _flower(self) -> Iterator[Any]:
        """Flower's families under ``taskforge_``, labelled by job type and queue as well."""
        names = self._queue_names()
        labels = ["worker", "job_type", "queue", "queue_id"]

        def series_labels(host: str, series: str) -> list[str]:
            job_type, _, queue_id = series.partition(SERIES_SEP)
            return [host, job_type, names.get(queue_id, queue_id), queue_id]

        counted = self.store.event_counts()
        # Like Flower's gauges, a series once seen stays, at 0 while nothing is in flight.
        seen = {(host, series): 0 for host, _, series in counted if series}
        events = CounterMetricFamily(
            "taskforge_events",
            "Celery events seen by the monitor (Flower's flower_events_total), by worker,"
            " event type, job type and queue.",
            labels=["worker", "type", "job_type", "queue", "queue_id"],
        )
        for (host, kind, series), n in sorted(counted.items()):
            worker, job_type, queue, queue_id = series_labels(host, series)
            events.add_metric([worker, kind, job_type, queue, queue_id], n)
        yield events
        prefetch = GaugeMetricFamily(
            "taskforge_task_prefetch_time_seconds",
            "Seconds the last task waited on its worker between received and started.",
            labels=labels,
        )
        for (host, series), seconds in sorted(self.store.prefetch_times().items()):
            prefetch.add_metric(series_labels(host, series), seconds)
        yield prefetch
        hosts = sorted(self.store.worker_states())
        for kind, metric, help_text in (
            ("prefetched", "taskforge_worker_prefetched_tasks", "Tasks received, not started."),
            (
                "executing",
                "taskforge_worker_number_of_currently_executing_tasks",
                "Tasks started, not finished.",
            ),
        ):
            gauge = GaugeMetricFamily(metric, help_text, labels=labels)
            in_flight = seen | self.store.in_flight(kind, hosts)
            for (host, series), n in sorted(in_flight.items()):
                gauge.add_metric(series_labels(host, series), n)
            yield gauge
        runtime = HistogramMetricFamily(
            "taskforge_task_runtime_seconds",
            "Time an attempt ran, by worker, job type and queue (flower_task_runtime_seconds).",
            labels=labels,
        )
        for key, histogram in sorted(self.store.histograms("task_run").items()):
            host, _, series = key.partition("|")
            runtime.add_metric(series_labels(host, series), *_buckets("task_run", histogram))
        yield runtime

    def _sql(self) -> Iterator[Any]:
        with session_scope(self.database_url) as session:
            queue_ids = list(session.scalars(select(Queue.id)))
            by_status = dict(
                session.execute(select(Worker.status, func.count()).group_by(Worker.status)).all()
            )
        depth = GaugeMetricFamily(
            "taskforge_queue_depth",
            "Messages waiting on the broker, by queue id.",
            labels=["queue"],
        )
        for queue_id in queue_ids:
            waiting = self.broker.depth(job_queue_name(queue_id))
            if waiting is not None:
                depth.add_metric([str(queue_id)], waiting)
        yield depth
        workers = GaugeMetricFamily(
            "taskforge_workers", "Registered workers, by status.", labels=["status"]
        )
        for status in WorkerStatus:
            workers.add_metric([status.value], by_status.get(status, 0))
        yield workers

    def _monitor(self) -> Iterator[Any]:
        counts = self.store.job_counts()
        for outcome in OUTCOMES:
            counter = CounterMetricFamily(
                f"taskforge_jobs_{outcome}",
                f"Job attempts that {outcome}, by queue id (from the monitor's events).",
                labels=["queue"],
            )
            for (queue, state), n in sorted(counts.items()):
                if state == outcome:
                    counter.add_metric([queue], n)
            yield counter
        for name, (metric, help_text) in HISTOGRAM_HELP.items():
            histograms = HistogramMetricFamily(metric, help_text, labels=["queue"])
            for queue, histogram in sorted(self.store.histograms(name).items()):
                histograms.add_metric([queue], *_buckets(name, histogram))
            yield histograms
        online = GaugeMetricFamily(
            "taskforge_worker_online", "1 while a Celery worker heartbeats.", labels=["worker"]
        )
        active = GaugeMetricFamily(
            "taskforge_worker_active_jobs", "Jobs a Celery worker runs now.", labels=["worker"]
        )
        for host, live in sorted(self.store.worker_states().items()):
            alive = is_alive(live)
            online.add_metric([host], 1.0 if alive else 0.0)
            active.add_metric([host], float(live.get("active") or 0) if alive else 0.0)
        yield online
        yield active


def _buckets(name: str, histogram: StoredHistogram) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets and the sum of a stored (non-cumulative) histogram."""
    cumulative, buckets = 0, []
    for bound in HISTOGRAMS[name]:
        cumulative += histogram.buckets.get(bound, 0)
        buckets.append((repr(bound), float(cumulative)))
    buckets.append(("+Inf", float(histogram.count)))
    return buckets, histogram.total


class _ProcessMetrics(Collector):
    """This process's own metrics (when not in multiprocess mode)."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def render(cluster: ClusterCollector) -> bytes:
    """The Prometheus text exposition of every process's metrics plus the cluster's."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
        # The default collectors, which multiprocess mode leaves out: the answering process.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    else:
        registry.register(_ProcessMetrics())
    registry.register(cluster)
    return generate_latest(registry)
