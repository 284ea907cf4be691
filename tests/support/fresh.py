"""Run Python in a fresh interpreter, for checks that must not touch the test process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from app.config import PROJECT_ROOT


def last_json_line(script: str) -> Any:
    """Run ``script`` with the project's interpreter; return its last line of output, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
