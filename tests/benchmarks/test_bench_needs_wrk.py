"""`make bench` without wrk says what is missing and how to install it, and fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The harness in a fresh interpreter (it sets its environment process-wide), with wrk
# hidden from PATH lookups.
_RUN_WITHOUT_WRK = """
import shutil, sys
found = shutil.which
shutil.which = lambda name, *args, **kwargs: None if name == "wrk" else found(name, *args, **kwargs)
from benchmarks.run import main
argv = ["--only", "rest", "--no-postgres", "--no-install", "--quiet-wait", "0"]
sys.exit(main([*argv, "--output", sys.argv[1]]))
"""


def test_the_rest_rows_name_the_missing_tool_and_the_run_fails(tmp_path: Path) -> None:
    report = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT_WRK, str(report)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("REST rows not measured: wrk not found on PATH")
    assert "apt-get install wrk" in last_line
    table = report.read_text()
    assert (
        "| REST submit throughput, SQLite | - | - | - | ≥ 0.50x (goal ≥ 0.70x) | skipped: wrk not"
        in table
    )
