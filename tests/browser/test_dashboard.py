"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against the
app served on a real port with a real Celery worker behind it.

Skipped when ``/usr/bin/chromium`` or the ``playwright`` package is missing, except under
``CI=true``: ``.ci/run`` installs Chromium, so there a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from app.config import PROJECT_ROOT, Settings
from app.redis_server import free_port
from tests.conftest import PASSWORD, Auth
from tests.support.tokens import mint
from tests.support.workers import WorkerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route, ViewportSize

pytestmark = [
    pytest.mark.slow,
    # One database is enough to test a page; the API's backends are tested elsewhere.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
UI_TIMEOUT_MS = 15_000
JOB_TIMEOUT_MS = 60_000
ACCESS_KEY = "taskforge.access_token"


def _require_browser() -> None:
    missing = []
    if shutil.which(str(CHROMIUM)) is None:
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if not missing:
        return
    reason = "browser test needs " + " and ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run should have installed it")
    pytest.skip(reason)


# The live monitor's event consumer, when the project has one (``python -m app.monitor``).
HAS_MONITOR = (PROJECT_ROOT / "app" / "monitor" / "__main__.py").is_file()


@pytest.fixture
def monitor_process(settings: Settings, output_dir: Path) -> Iterator[bool]:
    """Run the monitor's consumer beside the app, if there is one; yield whether there is."""
    if not HAS_MONITOR:
        yield False
        return
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "TASKFORGE_MONITOR_BIND": f"127.0.0.1:{free_port()}",
    }
    with (output_dir / "monitor.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.monitor"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield True
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture
def base_url(app: Flask) -> Iterator[str]:
    """The app on a real port of 127.0.0.1, served by werkzeug in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    server.server_close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A headless Chromium tab with a fresh profile; fails on script errors or CSP reports."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
            service_workers="block",
        )
        try:
            tab = context.pages[0] if context.pages else context.new_page()
            tab.set_default_timeout(UI_TIMEOUT_MS)
            tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            tab.on(
                "console",
                lambda message: (
                    problems.append(f"console: {message.text}")
                    if message.type == "error" and _unexpected(message.text)
                    else None
                ),
            )
            yield tab
        finally:
            context.close()
    assert problems == []


def _unexpected(text: str) -> bool:
    # Expected and handled by the page: the 401 of an expired token (refreshed) and the
    # 404s of a monitor API that is not deployed (the panel says so).
    return not any(f"status of {status}" in text for status in (401, 404))


def _expired_token(app: Flask, user_id: str, organization_id: str) -> str:
    return mint(
        app,
        user_id,
        claims={"org_id": organization_id, "role": "owner", "family": "x"},
        expires_in=timedelta(seconds=-30),
    )


def _no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def test_dashboard_end_to_end(
    app: Flask,
    auth: Auth,
    base_url: str,
    page: Page,
    monitor_process: bool,
    start_worker: Callable[..., WorkerProcess],
    output_dir: Path,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    worker = start_worker("-P", "solo")
    account = auth.register("Dashboard Co")
    queue_name = f"emails-{uuid.uuid4().hex[:6]}"

    # Log in through the form.
    page.goto(f"{base_url}/dashboard")
    expect(page.get_by_role("heading", name="Log in to TaskForge")).to_be_visible()
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#whoami")).to_contain_text(account.email)
    assert page.evaluate("(key) => sessionStorage.getItem(key)", ACCESS_KEY)

    # Create a queue.
    page.locator("#queue-name").fill(queue_name)
    page.locator("#queue-description").fill("Outgoing mail <b>not bold</b>")
    page.get_by_role("button", name="Create queue").click()
    queue_row = page.locator("#queue-table tbody tr", has_text=queue_name)
    expect(queue_row).to_be_visible()
    expect(queue_row.locator(".badge")).to_have_text("active")
    # Server strings are text, never markup.
    expect(queue_row).to_contain_text("Outgoing mail <b>not bold</b>")

    # An expired access token is refreshed on the next call, without a new login.
    expired = _expired_token(app, account.user_id, account.organization_id)
    page.evaluate("([key, token]) => sessionStorage.setItem(key, token)", [ACCESS_KEY, expired])
    # A function, not an expression: the page's CSP forbids eval, Playwright's included.
    page.wait_for_function(
        "([key, expired]) => { const t = sessionStorage.getItem(key); return t && t !== expired; }",
        arg=[ACCESS_KEY, expired],
    )
    expect(page.locator("#app")).to_be_visible()

    # Submit an echo job through the form and watch it succeed in the list.
    page.locator("#job-queue").select_option(label=queue_name)
    page.locator("#job-type").select_option("echo")
    page.locator("#job-payload").fill('{"hello": "dashboard", "n": [1, 2]}')
    page.locator("#job-priority").fill("5")
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#toast")).to_contain_text("submitted")
    job_row = page.locator("#job-table tbody tr").first
    expect(job_row).to_contain_text(queue_name)
    job_id = job_row.get_attribute("data-job-id")
    assert job_id
    succeeded = page.locator(f'#job-table tr[data-job-id="{job_id}"][data-status="succeeded"]')
    try:
        expect(succeeded).to_be_visible(timeout=JOB_TIMEOUT_MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{worker.log()[-3000:]}") from None
    expect(succeeded.locator(".badge")).to_have_text("succeeded")
    expect(page.locator("#job-pager")).to_have_text("1 job")

    # Filter the list by status.
    page.locator("#filter-status").select_option("failed")
    expect(page.locator("#job-empty")).to_be_visible()
    page.locator("#filter-status").select_option("succeeded")
    expect(succeeded).to_be_visible()

    # Open its detail: payload, result and every attempt.
    page.get_by_role("button", name=f"Details of job {job_id[:8]}").click()
    dialog = page.locator("#job-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".facts").first).to_contain_text(job_id)
    expect(dialog.locator(".facts").first).to_contain_text("1 of")
    expect(dialog.locator("pre").first).to_contain_text('"hello": "dashboard"')
    expect(dialog.get_by_role("heading", name="Result")).to_be_visible()
    expect(dialog.get_by_role("heading", name="Attempts (1)")).to_be_visible()
    expect(dialog.locator(".attempts li")).to_have_count(1)
    expect(dialog.locator(".attempts li .badge")).to_have_text("succeeded")
    expect(dialog.locator('[data-explain="finished"]')).to_contain_text("Succeeded after 1 attempt")
    if monitor_process:
        # The monitor's record of the job: its last event, attempt and worker.
        expect(dialog.get_by_role("heading", name="Live record")).to_be_visible()
        expect(dialog.locator(".live-record")).to_contain_text("succeeded")
        expect(dialog.locator(".live-record")).to_contain_text("1 of")
    page.screenshot(path=output_dir / "job-detail-desktop.png")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # Pause the queue through the UI and see it marked paused.
    page.get_by_role("button", name=f"Pause queue {queue_name}").click()
    expect(queue_row.locator(".badge")).to_have_text("paused")
    expect(queue_row).to_have_attribute("data-active", "false")
    expect(page.get_by_role("button", name=f"Resume queue {queue_name}")).to_be_visible()
    queues = auth.client.get("/api/v1/queues", headers=account.headers).get_json()["queues"]
    assert [q["is_active"] for q in queues if q["name"] == queue_name] == [False]

    # A job of the paused queue: its detail says why it does not run.
    waiting = auth.client.post(
        "/api/v1/jobs",
        json={"queue_name": queue_name, "job_type": "echo"},
        headers=account.headers,
    ).get_json()
    page.locator("#filter-status").select_option("pending")
    page.get_by_role("button", name=f"Details of job {waiting['id'][:8]}").click()
    expect(dialog.locator('[data-blocker="queue_paused"]')).to_contain_text("is paused")
    dialog.get_by_role("button", name="Close").click()
    page.locator("#filter-status").select_option("succeeded")

    if monitor_process:
        # The live view: the event stream is open, the worker is online, the job was seen.
        expect(page.locator("#live")).to_have_text("Live")
        expect(page.locator("#monitor-on")).to_be_visible()
        online = page.locator('#worker-table tbody tr[data-status="online"]')
        expect(online).not_to_have_count(0, timeout=JOB_TIMEOUT_MS)
        expect(page.locator(f'#task-table tr[data-job-id="{job_id}"]').first).to_be_visible(
            timeout=JOB_TIMEOUT_MS
        )
    else:
        # No monitor API: the workers panel says so instead of failing.
        expect(page.locator("#monitor-off")).to_be_visible()
        expect(page.locator("#monitor-on")).to_be_hidden()

    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=output_dir / "dashboard-desktop.png", full_page=True)

    page.set_viewport_size(PHONE)
    page.evaluate("() => window.scrollTo(0, 0)")
    expect(queue_row).to_be_visible()
    assert _no_horizontal_scroll(page), "the page scrolls sideways at 390 px"
    page.screenshot(path=output_dir / "dashboard-phone.png", full_page=True)
    page.get_by_role("button", name=f"Details of job {job_id[:8]}").click()
    expect(dialog.get_by_role("heading", name="Attempts (1)")).to_be_visible()
    assert _no_horizontal_scroll(page), "the job detail scrolls sideways at 390 px"
    page.screenshot(path=output_dir / "job-detail-phone.png")
    dialog.get_by_role("button", name="Close").click()

    # Log out: the tokens are gone and the form is back.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to TaskForge")).to_be_visible()
    assert page.evaluate("(key) => sessionStorage.getItem(key)", ACCESS_KEY) is None
    expect(page.locator("#job-table tbody tr, #queue-table tbody tr")).to_have_count(0)


class FakeMonitor:
    """The monitor API's contract (workers, queues, tasks, events, drain), served by the
    browser's request interception: the workers panel is tested before the real API lands."""

    def __init__(self, queue_id: str) -> None:
        now = datetime.now(UTC)
        self.queue_id = queue_id
        self.calls = 0
        self.streams = 0
        self.drained: list[str] = []
        self.workers: list[dict[str, Any]] = [
            {
                "id": "worker-alpha",
                "hostname": "celery@alpha",
                "status": "online",
                "active": 2,
                "processed": 1523,
                "failed": 7,
                "pool_size": 4,
                "loadavg": [0.42, 0.38, 0.3],
                "queues": [f"tf.{queue_id}"],
                "last_heartbeat": now.isoformat(),
            },
            {
                "id": "worker-beta",
                "hostname": "celery@beta-with-a-rather-long-hostname.internal.example",
                "status": "draining",
                "active": 0,
                "processed": 12,
                "failed": 0,
                "pool_size": 1,
                "loadavg": None,
                "queues": [],
                "last_heartbeat": (now - timedelta(seconds=40)).isoformat(),
            },
            {  # a shared platform worker: no id, so nothing to drain
                "id": None,
                "hostname": "celery@shared",
                "status": "online",
                "active": 0,
                "processed": 3,
                "failed": 0,
                "pool_size": 2,
                "loadavg": [],
                "queues": [f"tf.{queue_id}"],
                "last_heartbeat": now.isoformat(),
            },
        ]
        self.tasks: list[dict[str, Any]] = [
            {
                "job_id": str(uuid.uuid4()),
                "queue_id": queue_id,
                "job_type": "fail",
                "state": "failed",
                "worker": "celery@alpha",
                "timestamp": now.timestamp(),
                "runtime": 0.0123,
                "error": "<img src=x onerror=alert(1)>",
            }
        ]

    def _events(self) -> str:
        """One task and one worker event on the first connection.

        The state the events describe is kept, as a real monitor would, so polling
        after the stream ends shows the same thing."""
        self.streams += 1
        task = {**self.tasks[0], "job_id": str(uuid.uuid4()), "state": "succeeded", "error": None}
        self.tasks.insert(0, task)
        self.workers[1] = {**self.workers[1], "status": "offline"}
        return "".join(
            f"event: {name}\ndata: {json.dumps(data)}\n\n"
            for name, data in (("task", task), ("worker", self.workers[1]))
        )

    def route(self, route: Route) -> None:
        url = route.request.url
        if url.endswith("/monitor/events/tickets") and route.request.method == "POST":
            route.fulfill(status=201, json={"ticket": f"ticket-{self.streams}", "expires_in": 30})
        elif "/monitor/events" in url and self.streams:
            # The browser reconnects when a stream ends: refuse it, so the page polls.
            route.fulfill(status=404, json={"error": "Resource not found", "status_code": 404})
        elif "/monitor/events" in url:
            route.fulfill(status=200, content_type="text/event-stream", body=self._events())
        elif url.endswith("/drain") and route.request.method == "POST":
            # Celery workers are drained by nodename, under /monitor/workers.
            hostname = unquote(url.rsplit("/", 2)[-2])
            worker = next(w for w in self.workers if w["hostname"] == hostname)
            self.drained.append(worker["id"])
            route.fulfill(status=202, json={**worker, "status": "draining", "drain_mode": True})
        elif "/monitor/workers" in url:
            route.fulfill(json={"workers": self.workers})
        elif "/monitor/queues" in url:
            self.calls += 1
            item = {
                "queue_id": self.queue_id,
                "name": "ignored",
                "is_active": True,
                "depth": 3,
                "consumers": 2,
                "throughput_per_minute": [40, 95, 60, 120, 80][self.calls % 5],
                "oldest_waiting_seconds": 1.5,
            }
            route.fulfill(json={"queues": [item]})
        elif "/monitor/tasks" in url:
            route.fulfill(json={"tasks": self.tasks})
        else:
            route.continue_()


def test_workers_panel_follows_the_monitor_contract(
    client: FlaskClient, auth: Auth, base_url: str, page: Page, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    account = auth.register("Monitor Co")
    response = client.post("/api/v1/queues", json={"name": "reports"}, headers=account.headers)
    queue: dict[str, Any] = response.get_json()
    monitor = FakeMonitor(queue["id"])
    page.route("**/api/v1/monitor/**", monitor.route)
    page.route("**/api/v1/workers/**", monitor.route)
    page.on("dialog", lambda dialog: dialog.accept())

    page.goto(f"{base_url}/dashboard")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    workers = page.locator("#worker-table tbody tr")
    expect(workers).to_have_count(3)
    alpha = page.locator('#worker-table tr[data-worker-id="worker-alpha"]')
    expect(alpha).to_contain_text("celery@alpha")
    expect(alpha).to_contain_text("1523")
    expect(alpha).to_contain_text("reports")  # tf.<queue id> shown by the queue's name
    expect(alpha.locator(".badge")).to_have_text("online")
    # The stream's worker event updated beta in place.
    beta = page.locator('#worker-table tr[data-worker-id="worker-beta"]')
    expect(beta.locator(".badge")).to_have_text("offline")
    expect(page.get_by_role("button", name="Drain worker celery@beta")).to_have_count(0)
    shared = page.locator('#worker-table tr[data-worker-id="host:celery@shared"]')
    expect(shared.locator(".badge")).to_have_text("online")
    expect(shared.get_by_role("button")).to_have_count(0)
    # The stream's task event was added to the recent tasks; the error is text.
    expect(page.locator("#task-table tbody tr")).to_have_count(2)
    expect(page.locator("#task-table")).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("#task-table img").count() == 0
    # The queues table shows the monitor's consumers and throughput.
    queue_row = page.locator(f'#queue-table tr[data-queue-id="{queue["id"]}"]')
    expect(queue_row.locator("td.monitor-col").first).to_have_text("2")
    # The stream ended, so the page polls; the chart draws its samples.
    expect(page.locator("#live")).to_have_text("Polling every 3 s")
    expect(page.locator("#throughput polyline")).to_have_count(1, timeout=20_000)

    page.get_by_role("button", name="Drain worker celery@alpha").click()
    expect(page.locator("#toast")).to_contain_text("draining")
    assert monitor.drained == ["worker-alpha"]

    page.locator("#workers").scroll_into_view_if_needed()
    page.locator("#workers").screenshot(path=output_dir / "workers-desktop.png")
    page.set_viewport_size(PHONE)
    assert _no_horizontal_scroll(page), "the page scrolls sideways at 390 px"
    page.locator("#workers").screenshot(path=output_dir / "workers-phone.png")


def test_monitor_404_greys_out_the_workers_panel(auth: Auth, base_url: str, page: Page) -> None:
    from playwright.sync_api import expect

    account = auth.register("Quiet Co")
    page.route(
        "**/api/v1/monitor/**",
        lambda route: route.fulfill(
            status=404, json={"error": "Resource not found", "status_code": 404}
        ),
    )
    page.goto(f"{base_url}/dashboard")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#monitor-off")).to_be_visible()
    expect(page.locator("#monitor-on")).to_be_hidden()
    expect(page.locator("#queue-table th.monitor-col").first).to_be_hidden()
    expect(page.locator("#live")).to_have_text("Polling every 3 s")
