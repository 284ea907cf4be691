"""The outermost server interceptor: count and time every call by method and status code."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc

from app.metrics import GRPC_LATENCY, GRPC_REQUESTS
from grpc_service.interceptors import wrap_handler


class MetricsInterceptor(grpc.ServerInterceptor):
    """Record ``taskforge_grpc_requests_total`` and ``…_duration_seconds`` for each call."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        @contextmanager
        def around(context: grpc.ServicerContext) -> Iterator[None]:
            started = time.perf_counter()
            failed = False
            try:
                yield
            except BaseException:
                failed = True
                raise
            finally:
                code = context.code()
                if code is None:
                    code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
                GRPC_REQUESTS.labels(method=method, code=code.name).inc()
                GRPC_LATENCY.labels(method=method).observe(time.perf_counter() - started)

        return wrap_handler(handler, around)
