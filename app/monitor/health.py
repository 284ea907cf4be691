"""The monitor's /healthz and /readyz, on a small HTTP server of its own.

The standard library's threading HTTP server is enough for two GET routes that
orchestrators call every few seconds; a web framework would add nothing.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.config import split_bind

logger = logging.getLogger(__name__)

Checks = Callable[[], Mapping[str, bool]]


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, {"status": "ok"})
        elif self.path == "/readyz":
            checks = self.server.checks()
            body: dict[str, Any] = {
                "checks": {name: "ok" if ok else "unavailable" for name, ok in checks.items()}
            }
            failed = [name for name, ok in checks.items() if not ok]
            if failed:
                body.update(error=f"Not ready: {', '.join(failed)} unavailable", status_code=503)
                self._reply(503, body)
            else:
                self._reply(200, {"status": "ready", **body})
        else:
            self._reply(404, {"error": "Not found: try /healthz or /readyz", "status_code": 404})

    def _reply(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("health: " + format, *args)


class HealthServer(ThreadingHTTPServer):
    """Answer /healthz while the process lives and /readyz while every check passes."""

    daemon_threads = True

    def __init__(self, bind: str, checks: Checks) -> None:
        host, port = split_bind("TASKFORGE_MONITOR_BIND", bind)
        self.checks = checks
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (useful when bound to port 0)."""
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
