"""gRPC status codes → the client's one exception tree (``taskforge_client.errors``)."""

from __future__ import annotations

import grpc

from taskforge_client.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TaskForgeError,
    TransportError,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from taskforge_client.retry import parse_retry_after

ERROR_BY_CODE: dict[grpc.StatusCode, type[TaskForgeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: ValidationError,
    grpc.StatusCode.OUT_OF_RANGE: ValidationError,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: TransportError,
    grpc.StatusCode.CANCELLED: TransportError,
}


def error_from_rpc(error: grpc.RpcError) -> TaskForgeError:
    """The exception for a failed call; ``retry_after`` comes from the trailing metadata."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = (error.details() if isinstance(error, grpc.Call) else None) or str(code)
    trailers = dict(error.trailing_metadata() or ()) if isinstance(error, grpc.Call) else {}
    retry_after = trailers.get("retry-after")
    seconds = parse_retry_after(retry_after) if isinstance(retry_after, str) else None
    return ERROR_BY_CODE.get(code, ServerError)(message, retry_after=seconds)
