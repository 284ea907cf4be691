"""The server interceptor: rate limits, authentication and error mapping for every RPC.

Only ``taskforge.JobQueueService`` is guarded; health and reflection answer anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from app.errors import ValidationFailed
from app.services.ratelimit import RateLimited, RateLimiter
from grpc_service.auth import Authenticator, acting_as
from grpc_service.errors import status_for
from grpc_service.gen import job_queue_pb2 as pb

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["JobQueueService"].full_name
Around = Callable[[grpc.ServicerContext], AbstractContextManager[None]]


class Undecodable:
    """A request message that did not parse, kept so the call can answer INVALID_ARGUMENT.

    grpcio answers a deserializer's exception with INTERNAL; a client that sends a
    string that is not UTF-8 (e.g. an unpaired surrogate) made a bad request instead.
    """

    def __init__(self, error: DecodeError) -> None:
        self.error = error

    def reject(self) -> ValidationFailed:
        """The error that answers this request."""
        return ValidationFailed(
            f"Malformed request message ({self.error}): strings must be UTF-8 "
            "without unpaired surrogates"
        )


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return Undecodable(exc)

    return deserialize


def wrap_handler(
    handler: grpc.RpcMethodHandler, around: Around, *, reject_undecodable: bool = False
) -> grpc.RpcMethodHandler:
    """Run every call of ``handler`` inside ``around(context)``, streamed responses included.

    With ``reject_undecodable``, a unary request that does not parse raises
    ``ValidationFailed`` inside ``around``; outer wrappers pass it through untouched.
    """

    def decoded(request: Any) -> Any:
        if reject_undecodable and isinstance(request, Undecodable):
            raise request.reject()
        return request

    def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            with around(context):
                return behavior(decoded(request), context)

        return call

    def stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with around(context):
                yield from behavior(decoded(request), context)

        return call

    unary_request = bool(handler.unary_unary or handler.unary_stream)
    codecs = {
        "request_deserializer": _tolerant(handler.request_deserializer)
        if reject_undecodable and unary_request
        else handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **codecs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **codecs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **codecs)
    return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **codecs)


class EdgeInterceptor(grpc.ServerInterceptor):
    """Limit, authenticate, run, and answer errors with the status codes of ``errors.py``."""

    def __init__(self, authenticator: Authenticator, rate_limiter: RateLimiter | None) -> None:
        self._authenticator = authenticator
        self._rate_limiter = rate_limiter

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(f"/{SERVICE_NAME}/"):
            return handler
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata

        @contextmanager
        def around(context: grpc.ServicerContext) -> Iterator[None]:
            try:
                if self._rate_limiter is not None:
                    actor = self._authenticator.admit(metadata, peer_address(context.peer()))
                else:
                    actor = self._authenticator.authenticate(metadata)
                with acting_as(actor):
                    yield
            except Exception as exc:
                if context.code() is not None:
                    raise  # the servicer aborted with its own status
                _abort(context, method, exc)

        return wrap_handler(handler, around, reject_undecodable=True)


def peer_address(peer: str) -> str:
    """The host of a peer (``ipv4:h:p``, ``ipv6:[h]:p``), as REST sees a client address."""
    if peer.startswith(("ipv4:", "ipv6:")):
        host = peer.split(":", 1)[1].rsplit(":", 1)[0]
        return host.strip("[]")
    return peer


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def _abort_rate_limited(context: grpc.ServicerContext, exc: RateLimited) -> None:
    """RESOURCE_EXHAUSTED with google.rpc.RetryInfo, and a plain ``retry-after`` trailer."""
    retry_after = exc.verdict.retry_after
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after)))
    status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=str(exc), details=[detail])
    )
    trailers = (*status.trailing_metadata, ("retry-after", str(retry_after)))
    context.abort_with_status(_Status(status.code, status.details, trailers))


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> None:
    if isinstance(exc, RateLimited):
        _abort_rate_limited(context, exc)
    answer = status_for(exc)
    if answer is None:
        logger.exception("unhandled error in %s", method)
        answer = (grpc.StatusCode.INTERNAL, "Internal server error")
    elif answer[0] is grpc.StatusCode.UNAVAILABLE:
        logger.warning("%s: backend unavailable: %s", method, exc)
    context.abort(*answer)
