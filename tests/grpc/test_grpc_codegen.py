"""The generated stubs are current, and proto/ keeps every part of the seed contract."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from grpcsupport import SEED_PROTO, Contract

from grpc_service.codegen import GEN_DIR, generate
from grpc_service.gen import job_queue_pb2 as pb

# SHA-256 of the shared contract (DESIGN.md's job_queue.proto), taken when it was copied
# to tests/grpc/seed/: the test reads nothing outside the repository.
SHARED_CONTRACT_SHA256 = "ecd5d309d74988245b1879a60a273bfe01f7427af7f847426c8372042295b773"


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    fresh = {path.name: path.read_bytes() for path in generate(tmp_path / "gen")}
    committed = {
        path.name: path.read_bytes() for path in GEN_DIR.iterdir() if path.suffix in (".py", ".pyi")
    }
    assert sorted(fresh) == sorted(committed)
    stale = [name for name, content in fresh.items() if committed[name] != content]
    assert not stale, f"run `make protos`: {stale} differ from proto/"


def test_generated_grpc_module_imports_its_messages_relatively() -> None:
    source = (GEN_DIR / "job_queue_pb2_grpc.py").read_text()
    assert "from . import job_queue_pb2 as" in source
    assert "\nimport job_queue_pb2" not in source


def test_seed_copy_is_the_untouched_contract() -> None:
    assert hashlib.sha256(SEED_PROTO.read_bytes()).hexdigest() == SHARED_CONTRACT_SHA256


def type_name(field: Any) -> str:
    """The full name of a field's message or enum type; empty for scalars."""
    nested = field.message_type or field.enum_type
    return str(nested.full_name) if nested else ""


def test_proto_keeps_every_seed_message_field_and_number(contract: Contract) -> None:
    ours = pb.DESCRIPTOR
    seed_file = contract.pool.FindFileByName("job_queue.proto")
    assert ours.package == seed_file.package == "taskforge"
    for name, seed in seed_file.message_types_by_name.items():
        mine = ours.message_types_by_name[name]
        for field in seed.fields:
            kept = mine.fields_by_name[field.name]
            assert kept.number == field.number, f"{name}.{field.name}"
            assert kept.type == field.type, f"{name}.{field.name}"
            assert kept.is_repeated == field.is_repeated, f"{name}.{field.name}"
            assert type_name(kept) == type_name(field), f"{name}.{field.name}"


def test_proto_keeps_every_seed_enum_value(contract: Contract) -> None:
    seed_file = contract.pool.FindFileByName("job_queue.proto")
    for name, seed in seed_file.enum_types_by_name.items():
        mine = pb.DESCRIPTOR.enum_types_by_name[name]
        assert {v.name: v.number for v in seed.values} == {v.name: v.number for v in mine.values}


def test_proto_keeps_every_seed_method(contract: Contract) -> None:
    mine = pb.DESCRIPTOR.services_by_name["JobQueueService"]
    assert mine.full_name == contract.service.full_name
    for method in contract.service.methods:
        kept = mine.methods_by_name[method.name]
        assert kept.input_type.full_name == method.input_type.full_name
        assert kept.output_type.full_name == method.output_type.full_name
        assert not kept.server_streaming and not kept.client_streaming
