"""No credential reaches a log line: gunicorn, run as ``make run`` runs it, redacts them.

The event stream no longer takes ``?access_token=`` (it takes single-use tickets), but a
client may still send any credential in a query string or a header, and the access log
must not keep it, whatever ``--access-logformat`` an operator picks.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app.config import PROJECT_ROOT, Settings
from app.redis_server import free_port
from app.roles import role_argv
from tests.conftest import Account
from tests.security.support import create_key
from tests.support.workers import wait_for

# Every atom gunicorn offers that can carry a URL, a header or the environment.
EVERY_ATOM = (
    '%(h)s %(u)s "%(r)s" %(U)s ?%(q)s "%(f)s" "%(a)s" auth=%({authorization}i)s'
    " key=%({x-api-key}i)s cookie=%({cookie}i)s uri=%({raw_uri}e)s"
    " env-auth=%({http_authorization}e)s env-query=%({query_string}e)s"
)


class Gunicorn:
    """The ``api`` child of ``make run`` on a free port, its output in one file."""

    def __init__(self, settings: Settings, log: Path, extra_args: str = "") -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "JWT_SECRET_KEY": settings.jwt_secret_key,
            "TASKFORGE_SSE_MAX_SECONDS": "2",
            "TASKFORGE_SSE_KEEPALIVE_SECONDS": "1",
            "GUNICORN_CMD_ARGS": extra_args,
        }
        argv = role_argv("api", settings.replace(http_bind_address=f"127.0.0.1:{self.port}"))
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(self._answers, 60, f"gunicorn did not start:\n{self.text()}")

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.text()
        try:
            return self.get("/healthz", {}) == 200
        except OSError:
            return False

    def get(self, path: str, headers: dict[str, str]) -> int:
        """GET ``path``, read the whole body, return the status."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as error:
            error.read()
            return error.code

    def post(self, path: str, headers: dict[str, str]) -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method="POST", headers=headers
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())

    def send_raw(self, request: str) -> None:
        """Send bytes that need not be HTTP; read until the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            connection.sendall(request.encode())
            while connection.recv(4096):
                pass

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        """Stop gracefully (which flushes the log) and return everything it wrote."""
        self.process.terminate()
        self.process.wait(30)
        return self.text()


@pytest.fixture
def start_gunicorn(settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], Gunicorn]]:
    """Start gunicorn servers with extra ``GUNICORN_CMD_ARGS``; all stop at teardown."""
    started: list[Gunicorn] = []

    def start(extra_args: str = "") -> Gunicorn:
        server = Gunicorn(settings, tmp_path / f"gunicorn-{len(started)}.log", extra_args)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(30)


@pytest.mark.parametrize(
    "extra_args",
    [
        pytest.param("", id="project-format"),
        pytest.param(f"--access-logformat '{EVERY_ATOM}'", id="every-atom"),
    ],
)
def test_no_credential_reaches_the_access_log(
    start_gunicorn: Callable[[str], Gunicorn],
    client: FlaskClient,
    owner: Account,
    extra_args: str,
) -> None:
    key = create_key(client, owner, ["job:read", "queue:read"])["key"]
    server = start_gunicorn(extra_args)
    bearer = {"Authorization": f"Bearer {owner.access_token}"}
    ticket = json.loads(server.post("/api/v1/monitor/events/tickets", bearer))["ticket"]
    secrets = {
        "access token": owner.access_token,
        "refresh token": owner.refresh_token,
        "api key": key,
        "ticket": ticket,
        "password": "hunter2-password",
    }
    quote = urllib.parse.quote
    statuses = {
        "ticket stream": server.get(f"/api/v1/monitor/events?ticket={quote(ticket)}", {}),
        "query token stream": server.get(
            f"/api/v1/monitor/events?access_token={quote(owner.access_token)}", {}
        ),
        "query credentials": server.get(
            f"/api/v1/queues?page=1&api_key={quote(key)}&refresh_token="
            f"{quote(owner.refresh_token)}&password=hunter2-password&limit=5",
            {},
        ),
        "headers": server.get(
            "/api/v1/queues?page=1",
            {
                **bearer,
                "X-API-Key": key,
                "Cookie": f"session={ticket}",
                "Referer": f"http://x.example/?token={quote(owner.refresh_token)}",
            },
        ),
        "basic auth": server.get(
            "/api/v1/queues", {"Authorization": "Basic " + _basic(key, "hunter2-password")}
        ),
    }
    # A request line gunicorn cannot parse is logged whole, to the error log.
    server.send_raw(f"GET /x?access_token={owner.access_token}\r\n\r\n")
    log = server.stop()

    assert statuses["ticket stream"] == 200
    assert statuses["query token stream"] == 401
    leaked = [name for name, secret in secrets.items() if secret in log]
    assert not leaked, f"{leaked} in the log:\n{log}"
    # The lines are there, with their harmless parts kept.
    assert "/api/v1/monitor/events?ticket=[REDACTED]" in log
    assert "/api/v1/queues?page=1&api_key=[REDACTED]&refresh_token=[REDACTED]" in log
    assert "password=[REDACTED]&limit=5" in log
    assert "Invalid HTTP request line: 'GET /x?access_token=[REDACTED]'" in log


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()
