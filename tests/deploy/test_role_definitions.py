"""The role definitions, their settings, the CLI that offers them and the probes' verdicts."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.config import ConfigError, Settings, split_bind
from app.monitor.health import HealthServer
from app.probes import beat_alive, http, worker_nodename
from app.roles import ROLES, RUN_ROLES, local_address, role_argv, role_env

PY = "/venv/bin/python"


def test_the_cli_offers_every_role_a_health_check_and_the_old_names() -> None:
    commands = set(main.commands)
    assert set(ROLES) | {"run", "health", "db"} <= commands
    assert main.commands["migrate"] is main.commands["db"].commands["upgrade"]  # type: ignore[attr-defined]
    health = CliRunner().invoke(main, ["health", "--help"])
    assert all(role in health.output for role in RUN_ROLES)


def test_api_runs_gunicorn_with_the_configured_bind_and_sizes(tmp_path: Path) -> None:
    settings = Settings().replace(
        http_bind_address="0.0.0.0:8080", http_workers=4, http_threads=16, http_graceful_seconds=45
    )
    argv = role_argv("api", settings, var_dir=tmp_path, python=PY)
    assert argv[:3] == (PY, "-m", "gunicorn")
    options = dict(zip(argv[3:-1:2], argv[4:-1:2], strict=True))
    assert options == {
        "--bind": "0.0.0.0:8080",
        "--workers": "4",
        "--worker-class": "gthread",
        "--threads": "16",
        "--graceful-timeout": "45",
        "--config": "python:app.gunicorn_hooks",
        "--access-logfile": "-",
    }
    assert argv[-1] == "wsgi:app"


def test_worker_and_beat_run_celery_with_their_settings(tmp_path: Path) -> None:
    settings = Settings().replace(worker_name="w1@%h", worker_pool="solo", worker_concurrency=1)
    worker = role_argv("worker", settings, var_dir=tmp_path, python=PY)
    assert worker == (
        PY, "-m", "celery", "-A", "tasks.celery_app", "worker", "-l", "info",
        "-P", "solo", "-c", "1", "-n", "w1@%h",
    )  # fmt: skip
    beat = role_argv("beat", settings, var_dir=tmp_path, python=PY)
    assert beat[-2:] == ("-s", str(tmp_path / "celerybeat-schedule"))


def test_migrate_runs_in_process_and_has_no_command_line() -> None:
    with pytest.raises(ValueError, match="runs in-process"):
        role_argv("migrate", Settings())


def test_the_worker_maps_sigterm_to_the_soft_shutdown_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    assert role_env("worker", {"PATH": "/bin"}, var_dir=tmp_path)["REMAP_SIGTERM"] == "SIGQUIT"
    assert role_env("worker", {"REMAP_SIGTERM": "SIGTERM"}, var_dir=tmp_path) == {
        "REMAP_SIGTERM": "SIGTERM"
    }


def test_the_api_gets_an_empty_metrics_dir_unless_one_is_given(tmp_path: Path) -> None:
    stale = tmp_path / "prometheus" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    env = role_env("api", {}, var_dir=tmp_path)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "prometheus")
    assert not stale.exists()
    given = role_env("api", {"PROMETHEUS_MULTIPROC_DIR": "/srv/metrics"}, var_dir=tmp_path)
    assert given["PROMETHEUS_MULTIPROC_DIR"] == "/srv/metrics"


@pytest.mark.parametrize(
    ("bind", "dialled"),
    [
        ("0.0.0.0:8000", "127.0.0.1:8000"),
        ("[::]:8000", "[::1]:8000"),
        ("10.1.2.3:50051", "10.1.2.3:50051"),
        ("[fd00::1]:9000", "[fd00::1]:9000"),
        ("localhost:8001", "localhost:8001"),
    ],
)
def test_a_probe_dials_loopback_for_a_wildcard_bind(bind: str, dialled: str) -> None:
    assert local_address(bind) == dialled


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"http_bind_address": "8000"}, "TASKFORGE_HTTP_BIND must be host:port"),
        ({"grpc_bind_address": "host:99999"}, "TASKFORGE_GRPC_BIND must be host:port"),
        ({"monitor_bind": ":8001"}, "TASKFORGE_MONITOR_BIND must be host:port"),
        ({"http_workers": 0}, "TASKFORGE_HTTP_WORKERS must be at least 1"),
        ({"worker_concurrency": 0}, "TASKFORGE_WORKER_CONCURRENCY must be at least 1"),
        ({"worker_pool": "gevent"}, "TASKFORGE_WORKER_POOL must be one of prefork, solo"),
        ({"worker_name": "%h"}, "TASKFORGE_WORKER_NAME must be a Celery nodename"),
        ({"worker_soft_shutdown_seconds": -1}, "_SOFT_SHUTDOWN_SECONDS must not be negative"),
        ({"grpc_tls_cert": "/etc/tls/cert.pem"}, "Set both TASKFORGE_GRPC_TLS_CERT and"),
        ({"http_port": 70000}, "TASKFORGE_HTTP_PORT must be a TCP port number"),
    ],
)
def test_a_bad_role_setting_is_refused_by_name(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings().replace(**overrides).validate()


def test_a_role_command_with_a_bad_setting_says_which_without_a_traceback() -> None:
    result = CliRunner().invoke(main, ["api"], env={"TASKFORGE_HTTP_BIND": "nowhere"})
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: TASKFORGE_HTTP_BIND must be host:port, like 0.0.0.0:8000, got 'nowhere'"
    )


def test_split_bind_reads_ipv6_hosts() -> None:
    assert split_bind("X", "[::1]:50051") == ("::1", 50051)


def test_the_worker_probe_pings_the_nodename_celery_would_give_it() -> None:
    settings = Settings().replace(worker_name="w1@%h")
    assert worker_nodename(settings) == f"w1@{os.uname().nodename}"
    assert worker_nodename(settings.replace(worker_name="w1@box")) == "w1@box"


def test_beat_is_alive_while_its_file_is_fresh(tmp_path: Path) -> None:
    path = tmp_path / "beat.alive"
    missing = beat_alive(path, max_age=30)
    assert not missing.ok and "beat is not running" in missing.detail
    path.touch()
    assert beat_alive(path, max_age=30).ok
    old = time.time() - 120
    os.utime(path, (old, old))
    stale = beat_alive(path, max_age=30)
    assert not stale.ok and "last tick was 120s ago" in stale.detail


@pytest.fixture
def health_server() -> Iterator[tuple[HealthServer, dict[str, bool]]]:
    checks = {"events": True, "redis": True}
    server = HealthServer("127.0.0.1:0", lambda: dict(checks))
    server.start()
    yield server, checks
    server.stop()


def test_the_monitor_health_server_answers_readiness_from_its_checks(
    health_server: tuple[HealthServer, dict[str, bool]],
) -> None:
    server, checks = health_server
    base = f"http://127.0.0.1:{server.port}"
    assert http(f"{base}/readyz", 5).ok
    checks["events"] = False
    verdict = http(f"{base}/readyz", 5)
    assert not verdict.ok
    assert verdict.detail.endswith("answered 503 Not ready: events unavailable")
    assert http(f"{base}/healthz", 5).ok
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/metrics", timeout=5)
    assert missing.value.code == 404
    assert json.loads(missing.value.read())["error"].startswith("Not found")


def test_a_probe_of_nothing_listening_fails_with_the_reason() -> None:
    verdict = http("http://127.0.0.1:9/readyz", 2)
    assert not verdict.ok and "did not answer" in verdict.detail
