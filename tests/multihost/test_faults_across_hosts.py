"""TaskForge across simulated hosts, under load, through four faults. Nothing is lost.

Thirteen network namespaces on one bridge (tests/support/hosts.py): PostgreSQL; a
Redis master, its replica and three Sentinels; two API hosts; two worker hosts; two
beat hosts; the monitor. Every process is a real ``taskforge ROLE`` (or the real
server) bound to its own host's address and reaching the others over the bridge.
Clients submit ``sleep`` jobs through both API hosts the whole time, each with an
``Idempotency-Key`` it re-sends to the other API host after an error, so one key is
one job. During the load, in turn:

1. a worker host is cut off the network, then killed;
2. the Redis master is killed and the Sentinels fail over to the replica;
3. the active beat is killed;
4. an API host is restarted.

Per scenario the test reports jobs accepted, succeeded, lost (must be 0), run more
than once, 5xx answers, and the times to recover. At-least-once is the rule: a job
runs again only when the worker running it was lost or its acknowledgement was, and
every run is a recorded attempt; a job accepted (201) always ends ``succeeded`` here.
The report goes to ``test-output/<test>/report.md``; benchmarks/results/multihost.md
keeps one run's.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine, select, text

from app.config import PROJECT_ROOT
from app.models import JobAttempt
from app.redis_server import find_redis_server
from tests.support import hosts, sentinel
from tests.support.workers import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.multihost,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(hosts.available() is not None, reason=str(hosts.available())),
    pytest.mark.skipif(
        not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        reason="PostgreSQL is not installed (CI installs it)",
    ),
]

PASSWORD = "correct horse battery"
JOB_SECONDS = 0.2
SUBMITTERS = 3
SUBMIT_PAUSE = 0.25  # per submitter: about 12 jobs/s in all, under the workers' drain rate
PHASE_SECONDS = 25.0
LEASE_SECONDS = 5


@dataclass
class Cluster:
    """The hosts and what runs on them."""

    network: hosts.Network
    root: Path
    env: dict[str, str]
    roles: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def host(self, name: str) -> hosts.Host:
        return self.network.hosts[name]

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def start_role(self, host: str, role: str, **env: str) -> subprocess.Popen[bytes]:
        var_dir = self.root / "var" / host
        var_dir.mkdir(parents=True, exist_ok=True)
        process = self.host(host).start(
            [sys.executable, "-m", "app.cli", role],
            self.log(host),
            env={**self.env, "TASKFORGE_VAR_DIR": str(var_dir), **env},
            cwd=PROJECT_ROOT,
        )
        self.roles[host] = process
        return process

    def start_api(self, host: str) -> None:
        address = self.host(host).address
        self.start_role(host, "api", TASKFORGE_HTTP_BIND=f"{address}:8000")
        wait_for(lambda: _ready(f"http://{address}:8000"), 90, f"{host} not ready", interval=0.5)

    def sentinel_master(self) -> str:
        for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
            try:
                with redis.Redis(host=self.host(name).address, port=26379, socket_timeout=2) as c:
                    address = c.sentinel_get_master_addr_by_name(sentinel.MASTER_NAME)
                    return str(address[0])
            except redis.RedisError:
                continue
        raise AssertionError("no Sentinel answers")


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start_redis(cluster: Cluster) -> str:
    binary = find_redis_server()
    master = cluster.host("redis-1")
    master.start_redis(cluster.root / "redis-1")
    cluster.host("redis-2").start_redis(cluster.root / "redis-2", replica_of=master)
    sentinels = []
    for index in (1, 2, 3):
        host = cluster.host(f"sentinel-{index}")
        config = sentinel.write_config(
            cluster.root / host.name,
            bind=host.address,
            port=26379,
            master=(master.address, 6379),
            down_after_ms=2000,
            failover_timeout_ms=10000,
        )
        host.start([binary, str(config), "--sentinel"], cluster.log(host.name))
        sentinels.append((host.address, 26379))
    wait_for(
        lambda: sentinel.watching(sentinels),
        60,
        "the Sentinels never saw the replica and each other",
        interval=0.5,
    )
    return sentinel.sentinel_url(sentinels)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    names = ["postgres", "redis-1", "redis-2", "sentinel-1", "sentinel-2", "sentinel-3",
             "api-1", "api-2", "worker-1", "worker-2", "beat-1", "beat-2", "monitor"]  # fmt: skip
    with hosts.Network() as network:
        for name in names:
            network.add(name)
        cluster = Cluster(network, tmp_path, {})
        database_url = cluster.host("postgres").start_postgres(cluster.log("postgres"))
        redis_url = _start_redis(cluster)
        cluster.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TASKFORGE_", "PYTEST"))},
            "TASKFORGE_ENV": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "TASKFORGE_REDIS_SENTINEL_MASTER": sentinel.MASTER_NAME,
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "TASKFORGE_METRICS_TOKEN": secrets.token_urlsafe(24),
            "TASKFORGE_RATE_LIMIT": "1000000 per minute",
            "TASKFORGE_RATE_LIMIT_REGISTER": "1000 per minute",
            "TASKFORGE_LEASE_SECONDS": str(LEASE_SECONDS),
            "TASKFORGE_HTTP_WORKERS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        migrate = cluster.start_role("api-1", "migrate")
        assert migrate.wait(180) == 0, cluster.log("api-1").read_text()[-3000:]
        for api in ("api-1", "api-2"):
            cluster.start_api(api)
        for index, worker in enumerate(("worker-1", "worker-2"), start=1):
            cluster.start_role(
                worker, "worker",
                TASKFORGE_WORKER_NAME=f"worker{index}@%h", TASKFORGE_WORKER_CONCURRENCY="2",
            )  # fmt: skip
        for beat in ("beat-1", "beat-2"):
            cluster.start_role(beat, "beat")
        cluster.start_role(
            "monitor",
            "monitor",
            TASKFORGE_MONITOR_BIND=f"{cluster.host('monitor').address}:8001",
        )
        for worker in ("worker-1", "worker-2"):
            wait_for(lambda w=worker: " ready." in cluster.log(w).read_text(), 90, f"{worker}")
        yield cluster


@dataclass
class Submission:
    key: str
    job_id: str | None = None
    accepted_at: float | None = None


@dataclass
class Load:
    """Clients submitting jobs through both API hosts until stopped."""

    bases: list[str]
    headers: dict[str, str]
    queue_id: str
    submissions: list[Submission] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)  # (when, "503" / "connect")
    stop: threading.Event = field(default_factory=threading.Event)

    def submit(self, client: httpx.Client, rng: random.Random) -> None:
        submission = Submission(str(uuid.uuid4()))
        deadline = time.monotonic() + 60
        base = rng.choice(self.bases)
        while time.monotonic() < deadline:
            try:
                response = client.post(
                    f"{base}/api/v1/jobs",
                    json={"queue_id": self.queue_id, "job_type": "sleep",
                          "payload": {"seconds": JOB_SECONDS}},
                    headers={**self.headers, "Idempotency-Key": submission.key},
                )  # fmt: skip
            except httpx.HTTPError as exc:
                self.errors.append((time.time(), type(exc).__name__))
            else:
                if response.status_code in (200, 201):
                    submission.job_id = response.json()["id"]
                    submission.accepted_at = time.time()
                    break
                self.errors.append((time.time(), str(response.status_code)))
                assert response.status_code >= 500, response.text  # a 4xx is a test bug
            base = self.bases[(self.bases.index(base) + 1) % len(self.bases)]
            time.sleep(0.2)
        self.submissions.append(submission)

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                self.submit(client, rng)
                time.sleep(SUBMIT_PAUSE)


@dataclass
class Fault:
    name: str
    at: float
    recovered_after: float | None = None  # the fault's own recovery (takeover, restart)


def _inject(cluster: Cluster, faults: list[Fault]) -> None:
    """The four faults, one phase apart."""
    time.sleep(PHASE_SECONDS)

    faults.append(Fault("worker host cut off, then killed", time.time()))
    cluster.host("worker-1").cut()
    time.sleep(10)
    cluster.host("worker-1").kill()
    time.sleep(PHASE_SECONDS - 10)

    old_master = cluster.sentinel_master()
    faults.append(Fault("Redis master killed, Sentinel failover", time.time()))
    cluster.host("redis-1").kill()
    wait_for(lambda: cluster.sentinel_master() != old_master, 60, "no failover", interval=0.2)
    faults[-1].recovered_after = time.time() - faults[-1].at
    time.sleep(PHASE_SECONDS)

    active = next(
        b for b in ("beat-1", "beat-2") if "holding the beat lock" in cluster.log(b).read_text()
    )
    standby = "beat-2" if active == "beat-1" else "beat-1"
    faults.append(Fault("active beat killed", time.time()))
    cluster.host(active).kill()
    wait_for(lambda: "holding the beat lock" in cluster.log(standby).read_text(), 60, "no takeover")
    faults[-1].recovered_after = time.time() - faults[-1].at
    time.sleep(PHASE_SECONDS)

    faults.append(Fault("API host restarted", time.time()))
    assert cluster.host("api-2").stop(cluster.roles["api-2"]) == 0
    cluster.start_api("api-2")
    faults[-1].recovered_after = time.time() - faults[-1].at
    time.sleep(PHASE_SECONDS)


def test_no_accepted_job_is_lost_across_hosts_and_faults(cluster: Cluster) -> None:
    api1 = f"http://{cluster.host('api-1').address}:8000"
    api2 = f"http://{cluster.host('api-2').address}:8000"
    with httpx.Client(base_url=api1, timeout=10) as client:
        registered = client.post(
            "/api/v1/auth/register",
            json={
                "organization_name": "Multihost",
                "email": "ops@example.com",
                "password": PASSWORD,
            },
        )
        assert registered.status_code == 201, registered.text
        login = client.post(
            "/api/v1/auth/login", json={"email": "ops@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        queue = client.post(
            "/api/v1/queues",
            json={"name": "load", "settings": {"max_attempts": 10, "retry_backoff_seconds": 0}},
            headers=headers,
        )
        assert queue.status_code == 201, queue.text
    load = Load([api1, api2], headers, queue.json()["id"])
    threads = [threading.Thread(target=load.run, args=(seed,)) for seed in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    started = time.time()
    faults: list[Fault] = []
    try:
        _inject(cluster, faults)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(120)

    accepted = [s for s in load.submissions if s.job_id]
    engine = create_engine(cluster.env["DATABASE_URL"])

    def outcome() -> dict[str, tuple[str, float | None, int]]:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT CAST(j.id AS TEXT), j.status, j.completed_at, "
                    "(SELECT count(*) FROM job_attempts a WHERE a.job_id = j.id) FROM jobs j"
                )
            ).all()
        return {
            str(job_id): (
                status,
                completed.replace(tzinfo=UTC).timestamp() if completed else None,
                runs,
            )
            for job_id, status, completed, runs in rows
        }

    def all_finished() -> bool:
        states = outcome()
        return all(
            states.get(str(s.job_id), ("missing",))[0] in ("succeeded", "failed", "cancelled")
            for s in accepted
        )

    wait_for(
        all_finished, 300, "accepted jobs still unfinished 5 minutes after the load", interval=2
    )
    states = outcome()
    report = _report(started, faults, load, accepted, states)
    report += _slow_and_repeated(engine, started, faults, accepted, states)
    engine.dispose()
    out = PROJECT_ROOT / "test-output" / "multihost"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report)
    print(report)

    lost = [s.job_id for s in accepted if states.get(str(s.job_id), ("missing",))[0] != "succeeded"]
    assert lost == [], f"lost or failed: {lost[:10]}\n{report}"
    assert len(states) == len(accepted), "a job exists that no client was told about"
    assert not [code for _, code in load.errors if code == "500"], report
    assert all(s.job_id for s in load.submissions), "a submission was never accepted in 60 s"
    assert len(accepted) > 100, report


def _report(
    started: float,
    faults: list[Fault],
    load: Load,
    accepted: list[Submission],
    states: dict[str, tuple[str, float | None, int]],
) -> str:
    edges = [started, *(f.at for f in faults), float("inf")]
    names = ["no fault (warm-up)", *(f.name for f in faults)]
    lines = [
        f"# Multi-host fault run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{len(accepted)} jobs accepted through two API hosts ({SUBMITTERS} clients, "
        f"`sleep` {JOB_SECONDS} s jobs), two worker hosts with 2 processes each, PostgreSQL, Redis "
        f"master + replica + 3 Sentinels, two beats, the monitor; {PHASE_SECONDS:g} s per "
        f"phase; lease {LEASE_SECONDS} s.",
        "",
        "| phase | accepted | succeeded | lost | run more than once | 5xx seen "
        "| other client errors | fault's own recovery (s) | accepted to done p50 / max (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for index, name in enumerate(names):
        start, end = edges[index], edges[index + 1]
        phase = [s for s in accepted if s.accepted_at and start <= s.accepted_at < end]
        rows = [states.get(str(s.job_id), ("missing", None, 0)) for s in phase]
        succeeded = sum(1 for status, _, _ in rows if status == "succeeded")
        again = sum(1 for _, _, runs in rows if runs > 1)
        errors = Counter(code for when, code in load.errors if start <= when < end)
        fivexx = sum(n for code, n in errors.items() if code.isdigit() and code.startswith("5"))
        other = sum(n for code, n in errors.items() if not code.isdigit())
        recovery = "-"
        if index and faults[index - 1].recovered_after is not None:
            recovery = f"{faults[index - 1].recovered_after:.1f}"
        waits = sorted(
            done - s.accepted_at
            for s, (_, done, _) in zip(phase, rows, strict=True)
            if done is not None and s.accepted_at is not None
        )
        latency = f"{waits[len(waits) // 2]:.1f} / {waits[-1]:.1f}" if waits else "-"
        lines.append(
            f"| {name} | {len(phase)} | {succeeded} | {len(phase) - succeeded} | {again} | "
            f"{fivexx} {dict(errors) if fivexx else ''} | {other} | {recovery} | {latency} |"
        )
    lines += [
        "",
        "At-least-once: a job runs more than once only when the worker running it was lost "
        "(its lease ran out and the sweeper handed the job to another worker) or its message "
        "was redelivered; every run is a recorded attempt and the job succeeds once. "
        "5xx are 503s (a dependency was unavailable; the client retried with the same "
        "Idempotency-Key on the other API host); other client errors are connections "
        "refused or timed out while a host was down.",
    ]
    return "\n".join(lines) + "\n"


def _slow_and_repeated(
    engine: Engine,
    started: float,
    faults: list[Fault],
    accepted: list[Submission],
    states: dict[str, tuple[str, float | None, int]],
) -> str:
    """The attempts of each phase's slowest job and of every job that ran more than once."""
    edges = [started, *(f.at for f in faults), float("inf")]
    chosen: dict[str, float] = {}
    for start, end in itertools.pairwise(edges):
        phase = [s for s in accepted if s.accepted_at and start <= s.accepted_at < end]
        if phase:
            slowest = max(
                phase, key=lambda s: (states[str(s.job_id)][1] or 0) - (s.accepted_at or 0)
            )
            chosen[str(slowest.job_id)] = slowest.accepted_at or 0
    chosen.update(
        {str(s.job_id): s.accepted_at or 0 for s in accepted if states[str(s.job_id)][2] > 1}
    )
    with engine.connect() as connection:
        attempts = connection.execute(
            select(
                JobAttempt.job_id, JobAttempt.number, JobAttempt.worker_name,
                JobAttempt.status, JobAttempt.started_at, JobAttempt.finished_at,
                JobAttempt.error,
            )
            .where(JobAttempt.job_id.in_([uuid.UUID(job_id) for job_id in chosen]))
            .order_by(JobAttempt.job_id, JobAttempt.number)
        ).all()  # fmt: skip
    lines = ["", "## Slowest job of each phase, and every job that ran more than once", ""]
    for job_id, number, worker, status, began, finished, error in attempts:
        zero = chosen[str(job_id)]
        at = f"{began.timestamp() - zero:+.1f} s"
        took = f"{(finished - began).total_seconds():.1f} s" if finished else "unfinished"
        lines.append(
            f"- `{job_id}` attempt {number} on {worker}: started {at} after acceptance, "
            f"{status} after {took}{f' ({error})' if error else ''}"
        )
    return "\n".join(lines) + "\n"
