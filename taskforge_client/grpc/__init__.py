"""The gRPC client: ``GrpcClient`` over ``taskforge.JobQueueService``.

Its stubs are generated into ``_gen`` from ``proto/`` by ``make protos``, so the
client never imports the server's ``grpc_service`` package.
"""

from __future__ import annotations

from taskforge_client.grpc.client import GrpcClient

__all__ = ["GrpcClient"]
