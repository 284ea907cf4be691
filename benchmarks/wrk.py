"""Drive HTTP load with wrk (Debian's package) and parse its report."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_COMMAND = ["apt-get", "install", "-y", "wrk"]
INSTALL_HINT = (
    "the REST rows (TaskForge vs the minimal Flask baseline) need the wrk load generator: "
    "install it with `apt-get install wrk` (Debian/Ubuntu package wrk) and run again"
)
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


class WrkError(RuntimeError):
    """wrk failed or printed something this module cannot parse."""


@dataclass(frozen=True)
class WrkResult:
    """The numbers of one wrk run."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def ensure_wrk(install: bool) -> tuple[str | None, str | None]:
    """Return (path to wrk, None) or (None, why it is missing).

    When ``install`` is true and this process runs as root, a missing wrk is
    installed with ``apt-get install -y wrk`` (after ``apt-get update`` if needed).
    """
    found = shutil.which("wrk")
    if found:
        return found, None
    if not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, f"wrk not found on PATH; {INSTALL_HINT}"
    print(f"wrk not found; running: {' '.join(INSTALL_COMMAND)}", flush=True)
    if not _apt(INSTALL_COMMAND):
        _apt(["apt-get", "update"])
        _apt(INSTALL_COMMAND)
    found = shutil.which("wrk")
    return (found, None) if found else (None, f"apt-get could not install wrk; {INSTALL_HINT}")


def _apt(argv: list[str]) -> bool:
    done = subprocess.run(argv, capture_output=True, timeout=600, check=False)
    return done.returncode == 0


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def write_post_script(path: Path, body: Any, headers: dict[str, str]) -> Path:
    """Write a wrk Lua script that POSTs ``body`` as JSON with ``headers``."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {_lua_string(json.dumps(body))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse(output: str) -> WrkResult:
    """Parse ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if not (rps and total and p50 and p99):
        raise WrkError(f"cannot parse wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=_ms(*p50.groups()),
        p99_ms=_ms(*p99.groups()),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sock.groups()) if sock else 0,
    )


def run(
    wrk: str,
    url: str,
    script: Path,
    *,
    seconds: float,
    connections: int,
    threads: int,
) -> WrkResult:
    """Run ``wrk -tT -cC -dDs --timeout 5s --latency -s script url`` and parse it."""
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    return parse(done.stdout)
