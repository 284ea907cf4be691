"""proto/job_queue.proto documents its whole public contract, in English.

Every service, RPC, message, field and enum value carries a comment, read from
protoc's source info; none is left in the seed's language.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpcsupport import compile_descriptor_set

from grpc_service.codegen import PROTO_DIR

PROTO = PROTO_DIR / "job_queue.proto"
# FileDescriptorProto / DescriptorProto / ... field numbers, as protoc's source paths use them.
MESSAGE, FIELD, ENUM, VALUE, SERVICE, METHOD = 4, 2, 5, 2, 6, 2
# Words of the seed's comments (Indonesian) that no English comment uses.
SEED_WORDS = re.compile(r"\b(untuk|pesan|enumerasi|servis|dan|mendukung)\b", re.IGNORECASE)


def _file(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / "with_source_info.pb"
    data = compile_descriptor_set(PROTO, out, source_info=True)
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    return next(f for f in files if f.name == "job_queue.proto")


def _documented(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(location.path): location.leading_comments + location.trailing_comments
        for location in file.source_code_info.location
        if (location.leading_comments + location.trailing_comments).strip()
    }


def _elements(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Every public element's source path and name."""
    elements: dict[tuple[int, ...], str] = {}
    for i, service in enumerate(file.service):
        elements[(SERVICE, i)] = service.name
        for j, method in enumerate(service.method):
            elements[(SERVICE, i, METHOD, j)] = f"{service.name}.{method.name}"
    for i, message in enumerate(file.message_type):
        elements[(MESSAGE, i)] = message.name
        for j, field in enumerate(message.field):
            elements[(MESSAGE, i, FIELD, j)] = f"{message.name}.{field.name}"
    for i, enum in enumerate(file.enum_type):
        elements[(ENUM, i)] = enum.name
        for j, value in enumerate(enum.value):
            elements[(ENUM, i, VALUE, j)] = f"{enum.name}.{value.name}"
    return elements


def test_every_public_element_has_a_comment(tmp_path: Path) -> None:
    file = _file(tmp_path)
    documented = _documented(file)
    missing = sorted(name for path, name in _elements(file).items() if path not in documented)
    assert not missing, f"undocumented in {PROTO.name}: {missing}"


def test_no_comment_is_in_the_seeds_language() -> None:
    comments = [line for line in PROTO.read_text().splitlines() if "//" in line]
    assert comments
    assert not [line for line in comments if SEED_WORDS.search(line)]


def test_every_rpc_names_the_permission_it_needs(tmp_path: Path) -> None:
    file = _file(tmp_path)
    documented = _documented(file)
    for j, method in enumerate(file.service[0].method):
        assert "Needs " in documented[(SERVICE, 0, METHOD, j)], method.name
