"""A throwaway PostgreSQL cluster for one benchmark run, as ``.ci/run`` starts one.

``make bench`` measures the REST and end-to-end rows on PostgreSQL as well as on
SQLite.  With ``BENCH_POSTGRES_URL`` set, that server is used; otherwise, when
PostgreSQL's binaries are installed (Debian: ``apt-get install postgresql``), the
run starts its own cluster under its temp dir on a free loopback port, with the
same durability settings off as CI's (``fsync``, ``synchronous_commit``,
``full_page_writes``), and removes it afterwards.  PostgreSQL refuses to run as
root, so as root the cluster runs as the ``postgres`` account.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.procs import free_port

DATABASE = "taskforge_bench"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    # setpriv execs in place (runuser would stay as a parent); PostgreSQL checks the uid.
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


@contextmanager
def throwaway_cluster() -> Iterator[str | None]:
    """Yield the URL of a fresh database in a new cluster; None if PostgreSQL is not installed.

    The cluster lives in its own temp dir (the run's is private to its user, and
    the cluster's owner may be ``postgres``), removed with the cluster.
    """
    pg_bin = binaries()
    if pg_bin is None:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="taskforge-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port, pg_ctl = root / "data", free_port(), str(pg_bin / "pg_ctl")
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    run = functools.partial(subprocess.run, check=True, capture_output=True, cwd=root, timeout=120)
    try:
        run(
            _as_owner([str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres",
                       "--no-locale", "--encoding=UTF8", "--auth=trust"]),
        )  # fmt: skip
        run(
            _as_owner([pg_ctl, "-D", str(data), "-l", str(root / "postgres.log"), "-w",
                       "-t", "60", "start", "-o", options]),
        )  # fmt: skip
        run(
            [str(pg_bin / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {DATABASE}"],
        )  # fmt: skip
        print(f"throwaway PostgreSQL {pg_bin.parent.name} on 127.0.0.1:{port}", flush=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True, cwd=root, timeout=120, check=False,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
