"""The layering of docs/architecture.md holds: import contracts, and what each process loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.config import PROJECT_ROOT
from tests.support.fresh import last_json_line

# What a process imports at start, as its role runs it (app/roles.py).
ENTRY_POINTS = {
    "worker": ["celery.bin.celery", "tasks.celery_app", "tasks.worker", "tasks.executor",
               "tasks.maintenance", "tasks.lifecycle", "tasks.worker_commands"],
    "beat": ["celery.bin.celery", "tasks.celery_app", "tasks.beat", "tasks.worker",
             "tasks.maintenance"],
    "monitor": ["app.monitor.process"],
    "grpc": ["grpc_service.server"],
}  # fmt: skip
FLASK = ("flask", "flask_smorest", "flask_limiter", "marshmallow", "werkzeug", "webargs")


def loaded_by(modules: list[str]) -> set[str]:
    """Import ``modules`` in a fresh interpreter; return every top-level package it loaded."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    return set(last_json_line(script))


@pytest.mark.parametrize("process", sorted(ENTRY_POINTS))
def test_no_process_but_the_rest_api_loads_flask(process: str) -> None:
    loaded = loaded_by(ENTRY_POINTS[process])
    assert not loaded.intersection(FLASK), f"{process} loads {sorted(loaded & set(FLASK))}"


@pytest.mark.parametrize("process", ["worker", "beat", "monitor"])
def test_only_the_grpc_server_loads_grpc(process: str) -> None:
    assert "grpc" not in loaded_by(ENTRY_POINTS[process])


def test_the_rest_api_loads_flask_but_not_grpc() -> None:
    loaded = loaded_by(["wsgi"])
    assert "flask" in loaded
    assert "grpc" not in loaded


def test_importing_the_core_loads_no_framework() -> None:
    loaded = loaded_by(["app.services.jobs", "app.services.execution", "app.services.outbox"])
    assert not loaded.intersection({*FLASK, "grpc", "celery", "kombu"})


def test_the_import_contracts_hold() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(no_cache=True, no_logo=True))",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:]
