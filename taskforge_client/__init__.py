"""TaskForge's Python client: a typed REST SDK, a thin gRPC client and CLI verbs.

>>> from taskforge_client import TaskForge
>>> with TaskForge("http://127.0.0.1:8000", api_key="tf_...") as tf:
...     job = tf.jobs.submit("emails", "echo", {"hello": "world"})
...     tf.jobs.wait(job).result

The gRPC client is ``taskforge_client.grpc.GrpcClient``; errors of both are the
classes of ``taskforge_client.errors``.  See docs/client.md.
"""

from __future__ import annotations

from taskforge_client.client import TaskForge
from taskforge_client.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    TaskForgeError,
    TransportError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    ValidationError,
    WaitTimeout,
)
from taskforge_client.models import (
    ApiKey,
    ApiKeyCreated,
    Attempt,
    Event,
    Job,
    JobStats,
    JobStatus,
    LiveQueue,
    LiveWorker,
    Page,
    Queue,
    QueueStats,
    Registered,
    TaskEvent,
    TokenInfo,
    Tokens,
    Worker,
)
from taskforge_client.retry import RetryPolicy

__all__ = [
    "ApiKey",
    "ApiKeyCreated",
    "Attempt",
    "Conflict",
    "Event",
    "Job",
    "JobStats",
    "JobStatus",
    "LiveQueue",
    "LiveWorker",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "PermissionDenied",
    "Queue",
    "QueueStats",
    "RateLimited",
    "Registered",
    "RetryPolicy",
    "ServerError",
    "TaskEvent",
    "TaskForge",
    "TaskForgeError",
    "TokenInfo",
    "Tokens",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationError",
    "WaitTimeout",
    "Worker",
]
