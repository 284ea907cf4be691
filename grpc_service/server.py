"""The gRPC server: ``JobQueueService`` plus the standard health and reflection services.

``python -m grpc_service.server`` (``taskforge grpc``) serves on ``TASKFORGE_GRPC_BIND``
(default 127.0.0.1:$TASKFORGE_GRPC_PORT, 50051), with TLS when
``TASKFORGE_GRPC_TLS_CERT`` and ``_KEY`` name PEM files, until SIGTERM or SIGINT.  Then
health turns NOT_SERVING, so load balancers stop sending calls, and running calls
get a grace period to finish.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from app.config import ConfigError, Settings, load_settings
from app.heap import freeze_startup_objects
from app.runtime import Runtime
from grpc_service.auth import Authenticator
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from grpc_service.interceptors import SERVICE_NAME, EdgeInterceptor
from grpc_service.metrics import MetricsInterceptor
from grpc_service.servicers.service import JobQueueServicer

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# One thread per call in flight, matched to the SQL pool (8 + 8 overflow) so
# threads do not queue for connections; calls beyond the cap get RESOURCE_EXHAUSTED.
MAX_WORKERS = 16
MAX_CONCURRENT_RPCS = 256
WATCH_SLOTS = MAX_WORKERS // 2
GRACE_SECONDS = 10.0


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files, or None for plaintext."""
    if not settings.grpc_tls_cert:
        return None
    pems = []
    for name, path in (
        ("TASKFORGE_GRPC_TLS_KEY", settings.grpc_tls_key),
        ("TASKFORGE_GRPC_TLS_CERT", settings.grpc_tls_cert),
    ):
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from exc
        if b"-----BEGIN " not in pem:
            raise ConfigError(f"{name}: {path} is not a PEM file")
        pems.append(pem)
    key, chain = pems
    return grpc.ssl_server_credentials([(key, chain)])


def create_server(
    settings: Settings,
    address: str = "127.0.0.1:0",
    health_servicer: health.HealthServicer | None = None,
) -> tuple[grpc.Server, int]:
    """Build the server bound to ``address`` (not started); return it and its port."""
    credentials = server_credentials(settings)  # a bad certificate fails before anything starts
    runtime = Runtime.from_settings(settings)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="grpc"),
        interceptors=[
            MetricsInterceptor(),
            EdgeInterceptor(Authenticator(runtime), runtime.rate_limiter),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    servicer = JobQueueServicer(runtime, watch_slots=WATCH_SLOTS)
    pb_grpc.add_JobQueueServiceServicer_to_server(servicer, server)
    health_servicer = health_servicer or health.HealthServicer()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    return server, port


def main() -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    health_servicer = health.HealthServicer()
    server, _port = create_server(settings, settings.grpc_bind, health_servicer)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        logger.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    freeze_startup_objects()
    tls = " with TLS" if settings.grpc_tls_cert else ""
    logger.info("gRPC JobQueueService listening on %s%s", settings.grpc_bind, tls)
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(GRACE_SECONDS).wait()
    logger.info("gRPC server stopped")


if __name__ == "__main__":
    main()
