"""Tests for the ``make run`` supervisor: planning children, relaying output, stopping."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from app.config import Settings
from app.runner import (
    PlannedChild,
    RestartPolicy,
    Supervisor,
    banner,
    env_port,
    fresh_dir,
    plan_children,
)

PY = "/venv/bin/python"


def test_default_plan_runs_every_role_with_the_venv_python(tmp_path: Path) -> None:
    children = plan_children(Settings(), var_dir=tmp_path / "var", python=PY)
    assert [c.name for c in children] == ["api", "grpc", "worker", "beat", "monitor"]
    by_name = {c.name: c.argv for c in children}
    assert by_name["api"] == (
        PY, "-m", "gunicorn", "--bind", "127.0.0.1:8000", "--workers", "2",
        "--worker-class", "gthread", "--threads", "8", "--graceful-timeout", "30",
        "--config", "python:app.gunicorn_hooks", "--access-logfile", "-", "wsgi:app",
    )  # fmt: skip
    assert by_name["monitor"] == (PY, "-m", "app.monitor")
    assert by_name["grpc"] == (PY, "-m", "grpc_service.server")
    assert by_name["worker"][:6] == (PY, "-m", "celery", "-A", "tasks.celery_app", "worker")
    assert "taskforge@%h" in by_name["worker"]
    assert by_name["beat"][-2:] == ("-s", f"{tmp_path / 'var'}/celerybeat-schedule")
    # The worker hands back its jobs on SIGTERM, under make run as in production.
    worker = next(c for c in children if c.name == "worker")
    assert worker.env == {"REMAP_SIGTERM": "SIGQUIT"}


def test_ports_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_HTTP_PORT", "8100")
    monkeypatch.setenv("TASKFORGE_GRPC_PORT", "50100")
    children = plan_children(Settings(), python=PY)
    api = next(c for c in children if c.name == "api")
    assert "127.0.0.1:8100" in api.argv
    assert "127.0.0.1:50100" in banner("127.0.0.1:8100", "127.0.0.1:50100")
    assert "http://127.0.0.1:8100/api/v1/docs" in banner("0.0.0.0:8100", "0.0.0.0:50100")


@pytest.mark.parametrize("raw", ["http", "0", "70000", "-1"])
def test_bad_port_is_a_clear_error(raw: str) -> None:
    with pytest.raises(ValueError, match="TASKFORGE_HTTP_PORT"):
        env_port({"TASKFORGE_HTTP_PORT": raw}, "TASKFORGE_HTTP_PORT", 8000)


def test_empty_port_means_default() -> None:
    assert env_port({"TASKFORGE_GRPC_PORT": ""}, "TASKFORGE_GRPC_PORT", 50051) == 50051


def test_metric_files_of_a_past_run_are_removed(tmp_path: Path) -> None:
    old = tmp_path / "prometheus" / "counter_123.db"
    old.parent.mkdir()
    old.write_bytes(b"stale")
    assert fresh_dir(tmp_path / "prometheus") == old.parent
    assert list(old.parent.iterdir()) == []


def _python(code: str, name: str = "fake") -> PlannedChild:
    return PlannedChild(name, (sys.executable, "-c", code))


def test_a_crashing_child_is_restarted_while_the_others_keep_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = RestartPolicy(first_delay=0.05, max_delay=0.1, stable_after=30, max_fast_failures=2)
    supervisor = Supervisor(policy)
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    sleeper = supervisor.spawn(_python("import time; time.sleep(60)", "sleeper"), env)
    first_sleeper_process = sleeper.process
    supervisor.spawn(_python("print('hello'); raise SystemExit(3)", "crasher"), env)
    assert supervisor.watch() == (
        "crasher crashed 3 times in a row, each within 30s of starting (last exit code 3): "
        "giving up"
    )
    assert sleeper.process is first_sleeper_process and sleeper.process.poll() is None
    supervisor.stop_children(timeout=5.0)
    assert sleeper.process.returncode == -signal.SIGTERM  # stopped gracefully, not killed
    out = capsys.readouterr().out
    assert out.count("crasher   | hello") == 3
    assert "crasher exited with code 3; restarting in 0.05s" in out
    assert "crasher exited with code 3; restarting in 0.1s" in out


def test_a_child_that_ran_long_enough_is_always_restarted(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    code = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(1)"
    # stable_after=0: every run counts as a good one, so the supervisor never gives up.
    supervisor = Supervisor(RestartPolicy(first_delay=0.01, stable_after=0, max_fast_failures=1))
    supervisor.spawn(_python(code, "flapper"), {"PATH": "/usr/bin:/bin"})

    def stop_after_five_starts() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if starts.exists() and len(starts.read_text()) >= 5:
                break
            time.sleep(0.02)
        supervisor.signals += 1

    stopper = threading.Thread(target=stop_after_five_starts)
    stopper.start()
    assert supervisor.watch() is None
    stopper.join()
    supervisor.stop_children(timeout=1.0)
    assert len(starts.read_text()) >= 5


def test_the_children_of_a_killed_child_go_with_it(tmp_path: Path) -> None:
    grandchild_pid = tmp_path / "pid"
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(grandchild_pid)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    supervisor = Supervisor(RestartPolicy(first_delay=60))
    child = supervisor.spawn(_python(code, "parent"), {"PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 10
    while not (grandchild_pid.exists() and grandchild_pid.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    orphan = int(grandchild_pid.read_text())
    os.kill(child.process.pid, signal.SIGKILL)  # like a Celery main process killed by OOM
    watcher = threading.Thread(target=supervisor.watch)
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while _alive(orphan):
            assert time.monotonic() < deadline, "the killed child's own child survived"
            time.sleep(0.02)
        assert child.restart_at is not None  # and its restart is planned
    finally:
        supervisor.signals += 1
        watcher.join()
        supervisor.stop_children(timeout=1.0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    supervisor = Supervisor()
    supervisor.spawn(_python(code, "stubborn"), {"PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    supervisor.stop_children(timeout=0.5)
    assert supervisor.children[0].process.returncode == -signal.SIGKILL
