"""Helpers of the gRPC tests: the seed contract's client, call metadata, expected errors."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from grpc_tools import protoc
from sqlalchemy import select, update

from app.db import session_scope
from app.models import ApiKey, Job, JobStatus, Role, User
from app.services.auth import API_KEY_PREFIX, hash_api_key_secret

SEED_PROTO = Path(__file__).resolve().parent / "seed" / "job_queue.proto"
WELL_KNOWN_PROTOS = Path(protoc.__file__).resolve().parent / "_proto"
# A well-formed id that no row has.  Fixed, not random: it is part of parametrized test
# ids, and every pytest-xdist worker must collect the same ones.
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
Metadata = tuple[tuple[str, str], ...]


def compile_descriptor_set(proto: Path, out: Path, *, source_info: bool = False) -> bytes:
    """Run protoc on ``proto``; return its FileDescriptorSet with every import.

    With ``source_info``, the set keeps each element's source location and comments.
    """
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto.parent}",
            f"-I{WELL_KNOWN_PROTOS}",
            "--include_imports",
            *(["--include_source_info"] if source_info else []),
            f"--descriptor_set_out={out}",
            str(proto),
        ]
    )
    assert status == 0, f"protoc failed on {proto}"
    return out.read_bytes()


class Contract:
    """Messages and a stub of the seed contract, compiled by protoc at test time.

    They live in a private descriptor pool: the project's own stubs register the
    same file and symbols, with additions, in protobuf's default pool.
    """

    def __init__(self, descriptor_set: bytes, package: str = "taskforge") -> None:
        self.pool = descriptor_pool.DescriptorPool()
        for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
            self.pool.Add(file)
        self.package = package
        self.service = self.pool.FindServiceByName(f"{package}.JobQueueService")

    def __getattr__(self, name: str) -> Any:
        full_name = f"{self.package}.{name}"
        try:
            return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))
        except KeyError:
            return EnumTypeWrapper(self.pool.FindEnumTypeByName(full_name))

    def stub(self, channel: grpc.Channel) -> SimpleNamespace:
        """A stub with one callable per RPC of the seed service."""
        stub = SimpleNamespace()
        for method in self.service.methods:
            request = message_factory.GetMessageClass(method.input_type)
            response = message_factory.GetMessageClass(method.output_type)
            setattr(
                stub,
                method.name,
                channel.unary_unary(
                    f"/{self.service.full_name}/{method.name}",
                    request_serializer=request.SerializeToString,
                    response_deserializer=response.FromString,
                ),
            )
        return stub


def bearer(token: str) -> Metadata:
    """Metadata carrying an access token."""
    return (("authorization", f"Bearer {token}"),)


def api_key(key: str) -> Metadata:
    """Metadata carrying an API key."""
    return (("x-api-key", key),)


def rpc_error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> grpc.RpcError:
    """Call an RPC that must fail and return its error."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def assert_status(error: grpc.RpcError, code: grpc.StatusCode, *fragments: str) -> grpc.RpcError:
    """Check an error's status code and that its details mention each fragment."""
    assert error.code() is code, (error.code(), error.details())
    for fragment in fragments:
        assert fragment in (error.details() or ""), (fragment, error.details())
    return error


def message(cls: type[Any], **fields: Any) -> Any:
    """Build a message of ``cls`` from JSON-style fields (Values and Timestamps included)."""
    return json_format.ParseDict(fields, cls())


def create_api_key(database_url: str, organization_id: str, scopes: Iterable[str]) -> str:
    """Store an API key of the organization's owner with ``scopes``; return the raw key."""
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with session_scope(database_url) as session:
        owner_id = session.scalar(
            select(User.id).where(
                User.organization_id == uuid.UUID(organization_id), User.role == Role.OWNER
            )
        )
        session.add(
            ApiKey(
                organization_id=uuid.UUID(organization_id),
                created_by_id=owner_id,
                name="grpc-tests",
                prefix=prefix,
                key_hash=hash_api_key_secret(secret),
                scopes=list(scopes),
            )
        )
    return f"{API_KEY_PREFIX}_{prefix}_{secret}"


def set_job_status(database_url: str, job_id: str, status: JobStatus) -> None:
    """Force a job into ``status`` (as a worker would have left it)."""
    with session_scope(database_url) as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(status=status))
