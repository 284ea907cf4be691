"""Property-based contract test: the served OpenAPI document against the running app.

schemathesis generates requests for every operation from the document itself,
half of them aimed at real objects, and checks that nothing answers 5xx and
that every answer matches the documented status codes and schemas.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Account, Auth

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 20
CONFORMANCE = [not_a_server_error, response_schema_conformance, status_code_conformance]
SKIPPED = {
    # Logging out would revoke the token every other call uses; test_api2 covers it.
    "POST /api/v1/auth/logout",
    # A server-sent event stream stays open for its whole window; there is no body to check.
    "GET /api/v1/monitor/events",
}
CONFIG = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})


@pytest.fixture
def real_ids(client: FlaskClient, auth: Auth, owner: Account) -> dict[str, str]:
    """Ids of real objects, so that generated requests also reach past the 404s."""
    h = owner.headers
    # A member, not the owner, is the target: demoting the caller would end the run early.
    member = auth.member(owner, "member")
    project = client.post("/api/v1/projects", json={"name": "fuzzed"}, headers=h).json
    queue = client.post("/api/v1/queues", json={"name": "fuzzed"}, headers=h).json
    job = client.post(
        "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=h
    ).json
    key = client.post(
        "/api/v1/api-keys", json={"name": "fuzzed", "scopes": ["job:read"]}, headers=h
    ).json
    worker = client.post("/api/v1/workers", json={"name": "fuzzed"}, headers=h).json
    return {
        "organization_id": owner.organization_id,
        "user_id": member.user_id,
        "project_id": project["id"],
        "queue_id": queue["id"],
        "job_id": job["id"],
        "api_key_id": key["id"],
        "worker_id": worker["id"],
        "hostname": worker["name"],
    }


def _strategy(operation: Any, real_ids: dict[str, str]) -> st.SearchStrategy[Any]:
    names = {p.name for p in operation.path_parameters}
    strategies = [
        operation.as_strategy(),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    ]
    real = {name: real_ids[name] for name in names if name in real_ids}
    if real:
        strategies.append(operation.as_strategy(path_parameters=real))
    return st.one_of(strategies)


def test_every_operation_keeps_its_documented_contract(
    app: Flask, owner: Account, real_ids: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=CONFIG)
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in SKIPPED:
            continue

        @hypothesis.given(case=_strategy(operation, real_ids))
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            checks = CONFORMANCE if case.meta.generation.mode.is_positive else [not_a_server_error]
            case.call_and_validate(headers=owner.headers, checks=checks)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
