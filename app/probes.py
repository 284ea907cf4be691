"""Health probes behind ``taskforge health ROLE``, for orchestrators and health checks.

Each probe checks the role's process on this machine with the role's own settings
(run it where the role runs: in its container, or on its host) and returns a
:class:`Result`; the command exits 0 when it is healthy.

- api, monitor: GET ``/readyz`` (``--live``: ``/healthz``) on the role's listen
  address, dialled on loopback when it listens on every interface.
- grpc: ``grpc.health.v1.Health/Check`` for the server as a whole.  With TLS the
  probe trusts ``ca`` (default: the served certificate file itself, right for a
  self-signed one) and checks the certificate names ``server_name`` (default: the
  dialled address).
- worker: Celery's ``ping`` control command to this worker's nodename only; it
  answers from its consumer loop, through the broker.
- beat: the liveness file its scheduler touches every tick is younger than
  ``max_age`` seconds (``tasks.beat``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from app.config import VAR_DIR, Settings
from app.roles import BEAT_LIVENESS_FILE, local_address


@dataclass(frozen=True)
class Result:
    """A probe's verdict and a one-line reason."""

    ok: bool
    detail: str


def http(url: str, timeout: float) -> Result:
    """GET ``url``: healthy on 200, else the status and the body's error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return Result(True, f"{url} answered {response.status}")
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read()).get("error", "")
        except ValueError:
            error = ""
        return Result(False, f"{url} answered {exc.code} {error}".rstrip())
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Result(False, f"{url} did not answer: {reason}")


def grpc_health(
    address: str,
    timeout: float,
    root_certificates: bytes | None = None,
    server_name: str | None = None,
) -> Result:
    """Call ``grpc.health.v1.Health/Check`` for the whole server at ``address``."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if root_certificates:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        credentials = grpc.ssl_channel_credentials(root_certificates)
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as exc:
            return Result(False, f"{address}: {exc.code().name} {exc.details() or ''}".rstrip())
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return Result(reply.status == health_pb2.HealthCheckResponse.SERVING, f"{address}: {status}")


def worker_nodename(settings: Settings) -> str:
    """This machine's worker nodename, expanded as ``celery worker -n`` does."""
    from celery.utils.nodenames import default_nodename, host_format

    return str(host_format(default_nodename(settings.worker_name)))


def worker_ping(settings: Settings, timeout: float) -> Result:
    """Ping this machine's worker, and only it, through the broker."""
    from tasks.celery_app import app, use_broker

    use_broker(settings.redis_url, settings.redis_sentinel_master)
    nodename = worker_nodename(settings)
    try:
        replies = app.control.ping(destination=[nodename], timeout=timeout)
    except Exception as exc:  # kombu raises the transport's own errors
        return Result(False, f"{nodename}: could not reach the broker: {exc}")
    if any(nodename in reply for reply in replies):
        return Result(True, f"{nodename} answered ping")
    return Result(False, f"{nodename} did not answer ping within {timeout:g}s")


def beat_alive(path: Path, max_age: float) -> Result:
    """Healthy when beat's liveness file was touched less than ``max_age`` seconds ago."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return Result(False, f"{path} does not exist: beat is not running")
    if age > max_age:
        return Result(False, f"beat's last tick was {age:.0f}s ago (more than {max_age:g}s)")
    return Result(True, f"beat ticked {age:.1f}s ago")


def probe(
    role: str,
    settings: Settings,
    *,
    live: bool = False,
    timeout: float = 5.0,
    max_age: float = 30.0,
    ca: Path | None = None,
    server_name: str | None = None,
) -> Result:
    """Run the probe of ``role`` against its process on this machine."""
    path = "/healthz" if live else "/readyz"
    if role == "api":
        return http(f"http://{local_address(settings.http_bind)}{path}", timeout)
    if role == "monitor":
        return http(f"http://{local_address(settings.monitor_bind)}{path}", timeout)
    if role == "grpc":
        trusted = ca or (Path(settings.grpc_tls_cert) if settings.grpc_tls_cert else None)
        roots = trusted.read_bytes() if trusted else None
        return grpc_health(local_address(settings.grpc_bind), timeout, roots, server_name)
    if role == "worker":
        return worker_ping(settings, timeout)
    if role == "beat":
        return beat_alive(VAR_DIR / BEAT_LIVENESS_FILE, max_age)
    raise ValueError(f"no probe for role {role!r}")
