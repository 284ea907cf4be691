"""GET /api/v1/metrics (Prometheus text format) and the HTTP request metrics of every route.

The scrape is platform-wide (every organization's queues and workers), so it needs
``Authorization: Bearer <TASKFORGE_METRICS_TOKEN>`` (Prometheus' ``bearer_token``).  In
development the token is made on first run and kept in ``var/secrets/metrics_token``;
``make run`` prints it.  The client address proves nothing (behind a local reverse
proxy every caller is loopback), so only ``TASKFORGE_METRICS_PUBLIC=true`` with no token
opens the scrape.
"""

from __future__ import annotations

import hmac
import re
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.context import runtime, settings
from app.api.errors import error_response
from app.metrics import HTTP_LATENCY, HTTP_REQUESTS, ClusterCollector, render

blp = Blueprint("metrics", __name__)

_COLLECTOR_KEY = "taskforge.metrics"
UNMATCHED_ROUTE = "<unmatched>"
# "/queues/<id:queue_id>" is labelled "/queues/<queue_id>": the converter is routing detail.
_CONVERTER = re.compile(r"<[^<>:]+:([^<>]+)>")


@blp.before_app_request
def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


@blp.after_app_request
def _count_request(response: Response) -> Response:
    rule = request.url_rule
    route = _CONVERTER.sub(r"<\1>", rule.rule) if rule is not None else UNMATCHED_ROUTE
    HTTP_REQUESTS.labels(method=request.method, route=route, status=str(response.status_code)).inc()
    # A request refused by an earlier hook (rate limit) has no start time: counted, not timed.
    started = g.pop("metrics_started", None)
    if started is not None:
        HTTP_LATENCY.labels(method=request.method, route=route).observe(
            time.perf_counter() - started
        )
    return response


def _collector(app: Flask) -> ClusterCollector:
    if _COLLECTOR_KEY not in app.extensions:
        shared = runtime()
        app.extensions.setdefault(
            _COLLECTOR_KEY,
            ClusterCollector(shared.database_url, shared.broker, shared.live_state),
        )
    collector: ClusterCollector = app.extensions[_COLLECTOR_KEY]
    return collector


def _authorized() -> bool:
    config = settings()
    token = config.metrics_token
    if not token:
        return config.metrics_public
    presented = request.headers.get("Authorization", "")
    return hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())


@blp.get("/api/v1/metrics")
def metrics() -> Response:
    """Every process's counters plus cluster values read now, in Prometheus text format."""
    if not _authorized():
        response = error_response(401, "A valid metrics token is required")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return Response(render(_collector(current_app)), content_type=CONTENT_TYPE_LATEST)
