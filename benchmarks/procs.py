"""Start and stop the processes a benchmark needs, always by pid.

Every child runs in its own session (so a Ctrl-C in the terminal reaches only the
harness) and is registered in a :class:`ProcessSet`; the harness stops the whole set
in a ``finally`` block.  Stopping sends SIGTERM to the pid, waits, then SIGKILLs the
process group the child leads (its own session, so nothing else is in it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"


class StartError(RuntimeError):
    """A benchmark process did not become ready."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Proc:
    """One started child process with its log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        """Wrap an already started child."""
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        return self.popen.pid

    def running(self) -> bool:
        """Tell whether the child has not exited yet."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines the child wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the pid, wait up to ``timeout`` s, then SIGKILL its process group."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5.0)
        # Children orphaned by a leader that died abruptly are still in its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def __repr__(self) -> str:
        """Name and pid, for logs."""
        return f"<Proc {self.name} pid={self.pid}>"


class ProcessSet:
    """The children started during a run; :meth:`stop_all` ends each one by pid."""

    def __init__(self, log_dir: Path, base_env: Mapping[str, str], cwd: Path) -> None:
        """Remember where logs go and the environment every child starts from."""
        self.log_dir = log_dir
        self.base_env = dict(base_env)
        self.cwd = cwd
        self._procs: list[Proc] = []
        self._counter = 0

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        """Start ``argv`` in its own session with output to ``<log_dir>/<name>-N.log``."""
        self._counter += 1
        log_path = self.log_dir / f"{name}-{self._counter}.log"
        full_env = {**self.base_env, **(env or {})}
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=full_env,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self._procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        """Stop one child and forget it."""
        proc.stop()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        """Stop every child still registered, newest first."""
        while self._procs:
            self.stop(self._procs[-1])


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, proc: Proc | None = None
) -> None:
    """Poll ``check`` every 50 ms until it is true; raise StartError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.running():
            raise StartError(f"{what}: {proc.name} exited early:\n{proc.log_tail()}")
        if check():
            return
        if time.monotonic() > deadline:
            tail = f":\n{proc.log_tail()}" if proc is not None else ""
            raise StartError(f"{what}: not ready after {timeout:.0f}s{tail}")
        time.sleep(0.05)


def http_ok(url: str) -> bool:
    """Tell whether GET ``url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_open(port: int) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return idle, sum(fields)


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction (0-1) of all cores' time spent busy over ``interval`` seconds."""
    try:
        idle0, total0 = _cpu_times()
        time.sleep(interval)
        idle1, total1 = _cpu_times()
    except OSError:
        return 0.0
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total > 0 else 0.0


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime + stime in seconds) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by ``pids`` and all their live descendants.

    CPU time is what the system under test spent, whoever else shares the cores,
    so CPU per request stays comparable on a busy machine where req/s does not.
    """
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            stats[int(entry)] = found
    wanted = set(pids)
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in stats.items() if ppid in wanted} - wanted
        grew = bool(children)
        wanted |= children
    return sum(stats[pid][1] for pid in wanted if pid in stats)
