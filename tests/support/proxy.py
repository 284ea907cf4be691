"""An HTTP proxy in front of a real API that can lose an answer or fake a failure, once.

Lets a test show what a client does when the network fails *after* the server acted
(``drop_next_answer``: the request is forwarded, the answer thrown away and the
connection closed) or when a gateway answers for the server (``fail_next``).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultyProxy:
    """Forward every request to ``upstream``; misbehave on the next one when told."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._fault: tuple[str, int, dict[str, str]] | None = None
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def drop_next_answer(self) -> None:
        """Forward the next request, then close the connection without answering."""
        with self._lock:
            self._fault = ("drop", 0, {})

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next request with ``status`` without forwarding it."""
        with self._lock:
            self._fault = ("fail", status, headers or {})

    def _take_fault(self) -> tuple[str, int, dict[str, str]] | None:
        with self._lock:
            fault, self._fault = self._fault, None
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Keep the test output quiet."""

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append((self.command, self.path))
                fault = proxy._take_fault()
                if fault and fault[0] == "fail":
                    self._fake(fault[1], fault[2])
                    return
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    content = answer.read()
                finally:
                    upstream.close()
                if fault and fault[0] == "drop":
                    self.close_connection = True
                    return
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _fake(self, status: int, headers: dict[str, str]) -> None:
                content = json.dumps({"error": "injected by the proxy", "status_code": status})
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content.encode())

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        return Handler

    def count(self, method: str, path_prefix: str) -> int:
        """How many requests of ``method`` to paths starting with ``path_prefix`` came in."""
        return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))


@contextmanager
def faulty_proxy(upstream: str) -> Iterator[FaultyProxy]:
    """A running ``FaultyProxy`` in front of ``upstream``; stopped on exit."""
    proxy = FaultyProxy(upstream)
    proxy._thread.start()
    try:
        yield proxy
    finally:
        proxy._server.shutdown()
        proxy._server.server_close()
