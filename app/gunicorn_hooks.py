"""gunicorn settings and hooks for the API (``--config python:app.gunicorn_hooks``).

- No credential reaches a log line.  gunicorn builds access-log lines from the
  request's URL, headers and environment, whatever ``--access-logformat`` picks;
  ``RedactingLogger`` hands it a copy in which credential headers and credential-like
  query parameters read ``[REDACTED]``, and scrubs the messages of both logs (an
  invalid request line lands in the error log) of tokens, keys and such parameters.
- In Prometheus multiprocess mode each worker writes its metrics to files under
  ``PROMETHEUS_MULTIPROC_DIR``; a worker that exits must be marked dead so its
  live-gauge files stop counting.
- A worker that has loaded the app freezes its start-up objects out of the
  collector's full passes (``app.heap``), which would otherwise stall a request
  for tens of milliseconds every few thousand requests.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger
from prometheus_client import multiprocess

from app.heap import freeze_startup_objects

REDACTED = "[REDACTED]"
# A parameter or header whose name says it carries a credential.
_CREDENTIAL_NAME = re.compile(
    r"token|ticket|key|pass|secret|auth|jwt|sig|session|cookie|credential", re.IGNORECASE
)
_URL_ENVIRON = frozenset({"RAW_URI", "REQUEST_URI", "HTTP_REFERER"})
# What a credential looks like in free text: a credential-like parameter, a JWT, a
# TaskForge API key, or an Authorization header's value.
_SECRETS_IN_TEXT = (
    (
        re.compile(
            r"(?P<keep>[?&;](?:[^=&\s\"']*(?:"
            + _CREDENTIAL_NAME.pattern
            + r")[^=&\s\"']*)=)[^&\s\"']*",
            re.IGNORECASE,
        ),
        rf"\g<keep>{REDACTED}",
    ),
    (re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*"), REDACTED),
    (re.compile(r"\btf_[A-Za-z0-9]+_[\w-]+"), REDACTED),
    (re.compile(r"\b(?P<keep>(?:Bearer|Basic)\s+)\S+", re.IGNORECASE), rf"\g<keep>{REDACTED}"),
)


def redact_query(query: str) -> str:
    """Replace the value of every credential-like parameter; keep the rest byte for byte."""
    # Split by hand, not with parse_qsl/urlencode: those would re-encode what they keep.
    parts = []
    for part in query.split("&"):
        name, sep, _value = part.partition("=")
        if sep and _CREDENTIAL_NAME.search(unquote_plus(name)):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """Redact a URL's query string (``redact_query``)."""
    path, sep, query = url.partition("?")
    return f"{path}{sep}{redact_query(query)}" if sep else url


def redact_text(text: str) -> str:
    """Scrub tokens, keys and credential-like parameters out of a log message."""
    for pattern, replacement in _SECRETS_IN_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redacted_header(name: str, value: Any) -> Any:
    if name.lower() == "referer":
        return redact_url(str(value))
    return REDACTED if _CREDENTIAL_NAME.search(name) else value


def _redacted_headers(headers: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(name, _redacted_header(name, value)) for name, value in headers]


def _redacted_environ(environ: Mapping[str, Any]) -> dict[str, Any]:
    redacted = dict(environ)
    for name, value in environ.items():
        if name in _URL_ENVIRON:
            redacted[name] = redact_url(str(value))
        elif name == "QUERY_STRING":
            redacted[name] = redact_query(str(value))
        elif name.startswith("HTTP_") and _CREDENTIAL_NAME.search(name[5:]):
            redacted[name] = REDACTED
    return redacted


class _RedactMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        return True


class RedactingLogger(Logger):
    """gunicorn's logger, but no credential reaches a line of either log."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.addFilter(_RedactMessages())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> Any:
        """Build the access log's atoms from a redacted copy of the request."""
        headers = req.headers if hasattr(req, "headers") else req
        if hasattr(headers, "items"):
            headers = headers.items()
        response = SimpleNamespace(
            status=resp.status,
            sent=getattr(resp, "sent", None),
            headers=_redacted_headers(
                resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
            ),
        )
        return super().atoms(
            response,
            SimpleNamespace(headers=_redacted_headers(headers)),
            _redacted_environ(environ),
            request_time,
        )


logger_class = RedactingLogger


def post_worker_init(worker: Any) -> None:
    """Freeze the objects of a worker that has just loaded the app (``app.heap``)."""
    freeze_startup_objects(worker.log.error_log)


def child_exit(_server: Any, worker: Any) -> None:
    """Mark an exited gunicorn worker's metric files dead."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
