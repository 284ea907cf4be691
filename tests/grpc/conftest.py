"""Fixtures of the gRPC tests: an in-process server on port 0 and clients of it.

- ``contract``: the seed contract (``seed/job_queue.proto``, a verbatim copy of
  the shared contract) compiled by protoc for this session.
- ``grpc_server``: ``create_server(settings)`` started on 127.0.0.1:0; its address.
- ``grpc_stub``: a client built from the seed contract, as an existing client would be.
- ``project_stub``: a client from ``grpc_service/gen``, for the RPCs TaskForge added.
- ``owner_md``: call metadata carrying the ``owner`` fixture's access token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import grpc
import pytest
from grpcsupport import SEED_PROTO, Contract, Metadata, bearer, compile_descriptor_set

from app.config import Settings
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from grpc_service.server import create_server

if TYPE_CHECKING:
    from tests.conftest import Account


@pytest.fixture(scope="session")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Contract:
    """The seed contract compiled at test time."""
    out = tmp_path_factory.mktemp("contract") / "job_queue.pb"
    return Contract(compile_descriptor_set(SEED_PROTO, out))


@pytest.fixture
def start_grpc_server() -> Iterator[Callable[[Settings], str]]:
    """Start servers with given settings on port 0; all stop at teardown."""
    servers: list[grpc.Server] = []

    def start(settings: Settings) -> str:
        server, port = create_server(settings)
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None).wait()


@pytest.fixture
def grpc_server(settings: Settings, start_grpc_server: Callable[[Settings], str]) -> str:
    """A running TaskForge gRPC server on the test services; its ``host:port``."""
    return start_grpc_server(settings)


@pytest.fixture
def grpc_channel(grpc_server: str) -> Iterator[grpc.Channel]:
    """An insecure channel to ``grpc_server``."""
    with grpc.insecure_channel(grpc_server) as channel:
        yield channel


@pytest.fixture
def grpc_stub(contract: Contract, grpc_channel: grpc.Channel) -> SimpleNamespace:
    """A JobQueueService client built from the seed contract."""
    return contract.stub(grpc_channel)


@pytest.fixture
def project_stub(grpc_channel: grpc.Channel) -> pb_grpc.JobQueueServiceStub:
    """A JobQueueService client from the project's generated stubs."""
    return pb_grpc.JobQueueServiceStub(grpc_channel)


@pytest.fixture
def owner_md(owner: Account) -> Metadata:
    """Call metadata with the access token of ``owner``."""
    return bearer(owner.access_token)
