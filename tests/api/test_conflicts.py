"""A lost race on a unique name is 409, like the same duplicate found by the services' check.

Two requests both pass the check-then-insert of ``create_queue`` (or
``create_project``); the unique index lets one insert win.  Before, the loser's
``IntegrityError`` answered 500.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app.config import Settings
from tests.conftest import Account
from tests.support.races import inserts_meet, run_together


@pytest.mark.parametrize(
    ("path", "table", "message"),
    [
        ("/api/v1/queues", "queues", "A queue with this name already exists"),
        ("/api/v1/projects", "projects", "A project with this name already exists"),
    ],
)
def test_concurrent_creates_of_one_name_are_201_and_409(
    app: Flask, owner: Account, settings: Settings, path: str, table: str, message: str
) -> None:
    def create() -> Any:
        with app.test_client() as client:
            response = client.post(path, json={"name": "twin"}, headers=owner.headers)
            return response.status_code, response.get_json()

    with inserts_meet(settings.database_url, table) as barrier:
        answers = run_together(create, create)
    assert not barrier.broken, "both requests reached the insert"
    assert sorted(status for status, _ in answers) == [201, 409], answers
    conflict = next(body for status, body in answers if status == 409)
    assert conflict == {"error": message + " in the organization", "status_code": 409}
    with app.test_client() as client:
        listed = client.get(path, headers=owner.headers).get_json()
    assert [item["name"] for item in listed[table]].count("twin") == 1
