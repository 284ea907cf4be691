"""The served OpenAPI document against the real server: schemathesis' CLI on gunicorn.

Every phase that needs no links runs (examples, coverage, fuzzing), in positive and
negative mode, with the conformance checks: no 5xx; status codes, content types and
bodies as documented; every schema-valid request accepted and every
schema-violating one rejected.  Before the document was made exact, 27 of 46
operations failed here (path ids documented as any string, settings as any
object, ``is_active`` taking 0 and 1, missing bodies accepted, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app.config import Settings
from app.redis_server import free_port
from tests.conftest import PASSWORD
from tests.support.workers import ServiceProcess, wait_for

pytestmark = [
    pytest.mark.slow,
    # The contract is the REST edge's; the SQL behind it is tested on both backends elsewhere.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

EXAMPLES_PER_OPERATION = 20
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
    ]
)
# Rules a JSON Schema cannot state, each with the check it defeats; the rest must pass.
UNSTATABLE = {
    # "After now" is no schema constraint: a valid date-time in the past is refused.
    ("POST /api/v1/api-keys", "ST202"),
    # Only the caller's actual password is accepted as current_password (a field error).
    ("POST /api/v1/auth/password", "ST202"),
    # A purge must repeat the queue's name: no schema can name a row's value.
    ("POST /api/v1/queues/{queue_id}/purge", "ST202"),
    # Each job type once in a policy: uniqueItems compares whole items, not one field.
    ("PUT /api/v1/queues/{queue_id}/policy", "ST202"),
    # Flower's received_start/_end are calendar minutes: a pattern cannot rule out Feb 30.
    ("GET /api/v1/flower/api/tasks", "ST202"),
    # A job list's cursor is opaque: only one a list returned is accepted.
    ("GET /api/v1/jobs", "ST202"),
}
# As `make run` serves the API (app/runner.py): streams need threads.
GUNICORN_OPTIONS = ["--workers", "2", "--worker-class", "gthread", "--threads", "4"]
EXCLUDED_PATHS = [
    # Logging out revokes the token every other request uses; tests/api covers it.
    "/api/v1/auth/logout",
]


class ApiServer(ServiceProcess):
    """The REST API under gunicorn, as ``make run`` serves it, on a free port."""

    ready_marker = "Booting worker"

    def __init__(self, settings: Settings, log_path: Path, port: int) -> None:
        super().__init__(
            settings,
            log_path,
            ["gunicorn", "--bind", f"127.0.0.1:{port}", *GUNICORN_OPTIONS, "wsgi:app"],
            env={
                "TASKFORGE_RATE_LIMIT": "1000000 per minute",
                "TASKFORGE_RATE_LIMIT_LOGIN": "1000000 per minute",
                "TASKFORGE_RATE_LIMIT_REGISTER": "1000000 per hour",
                "TASKFORGE_ACCESS_TOKEN_MINUTES": "120",
                # Event streams end fast, so fuzzing /monitor/events does not wait 30 s a call.
                "TASKFORGE_SSE_MAX_SECONDS": "2",
                "TASKFORGE_SSE_KEEPALIVE_SECONDS": "1",
            },
        )
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
def live_api(settings: Settings, output_dir: Path) -> Iterator[str]:
    """The API served by gunicorn on the test's services; its base URL."""
    server = ApiServer(settings, output_dir / "gunicorn.log", free_port())
    try:
        server.wait_ready()
        wait_for(lambda: _answers(f"{server.url}/healthz"), 30, server.log()[-3000:])
        yield server.url
    finally:
        server.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet, or still booting
        return False


def _seed(base: str) -> tuple[str, dict[str, str]]:
    """Register an owner and one object of each kind; return a token and their ids."""
    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "organization_name": "Fuzzed"}
    registered = requests.post(f"{base}/api/v1/auth/register", json=body, timeout=10).json()
    login = {"email": email, "password": PASSWORD}
    token = requests.post(f"{base}/api/v1/auth/login", json=login, timeout=10).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    def create(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{base}/api/v1/{path}", json=payload, headers=headers, timeout=10)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    org = registered["organization_id"]
    member = create(f"organizations/{org}/members", {"email": f"m-{email}", "password": PASSWORD})
    queue = create("queues", {"name": "fuzzed"})
    ids = {
        "organization_id": org,
        "user_id": member["id"],
        "project_id": create("projects", {"name": "fuzzed"})["id"],
        "queue_id": queue["id"],
        "job_id": create("jobs", {"queue_id": queue["id"], "job_type": "echo"})["id"],
        "api_key_id": create("api-keys", {"name": "fuzzed", "scopes": ["job:read"]})["id"],
        "worker_id": create("workers", {"name": "fuzzed"})["id"],
    }
    return token["access_token"], ids


def _config(path: Path, ids: dict[str, str]) -> Path:
    """A schemathesis.toml, with ``ids`` as every path id's value when given.

    Generated ids test that ids are documented as they are parsed; real ones let
    requests reach past the 404s to the objects.  Generated text carries no NUL:
    the services refuse it everywhere and names and descriptions document it with
    a pattern, but OpenAPI 3.0 cannot constrain the keys of free-form JSON
    (payloads, settings, capabilities) to match.  Malformed
    and NUL-bearing input has its own tests (tests/api/test_input_edges.py).
    """
    lines = ["[generation]", "allow-x00 = false", ""]
    if ids:
        lines += ["[parameters]", *(f'"path.{name}" = "{value}"' for name, value in ids.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _failures(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (operation, failure["code"])
        for failure in report["failures"]
        for operation in failure["operations"]
    }


@pytest.mark.parametrize("path_ids", ["generated", "real"])
def test_the_served_openapi_describes_what_the_server_does(
    live_api: str, tmp_path: Path, path_ids: str
) -> None:
    token, ids = _seed(live_api)
    config = _config(tmp_path / "schemathesis.toml", ids if path_ids == "real" else {})
    report_dir = tmp_path / "report"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{live_api}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--phases",
        "examples,coverage,fuzzing",
        "--mode",
        "all",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--generation-deterministic",  # also keeps no example database
        # One worker: hypothesis' lambda-description cache is not thread-safe.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--report",
        "json",
        "--report-dir",
        str(report_dir),
        "--no-color",
        *(arg for path in EXCLUDED_PATHS for arg in ("--exclude-path", path)),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path
    )
    reports = list(report_dir.glob("*.json"))
    assert reports, run.stdout[-5000:] + run.stderr[-3000:]
    report = json.loads(reports[0].read_text())
    assert report["operations"]["tested"] >= 40, report["operations"]
    assert not report["errors"], run.stdout[-8000:]
    unexpected = _failures(report) - UNSTATABLE
    assert not unexpected, f"{sorted(unexpected)}\n\n{run.stdout[-15000:]}"
