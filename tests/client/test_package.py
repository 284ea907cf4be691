"""The client package stands alone: its own stubs, none of the server's modules, typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grpc_service.codegen import CLIENT_GEN_DIR, generate

SERVER_PACKAGES = ("app", "tasks", "grpc_service")


def test_the_client_ships_stubs_fresh_from_proto(tmp_path: Path) -> None:
    fresh = {path.name: path.read_bytes() for path in generate(tmp_path / "gen")}
    committed = {
        path.name: path.read_bytes()
        for path in CLIENT_GEN_DIR.iterdir()
        if path.suffix in (".py", ".pyi")
    }
    assert sorted(fresh) == sorted(committed)
    stale = [name for name, content in fresh.items() if committed[name] != content]
    assert not stale, f"run `make protos`: {stale} differ from proto/"


def test_importing_the_client_loads_no_server_module() -> None:
    probe = (
        "import sys, taskforge_client, taskforge_client.grpc, taskforge_client.cli\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_PACKAGES!r}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_the_package_is_marked_typed() -> None:
    import taskforge_client

    assert (Path(taskforge_client.__file__).parent / "py.typed").is_file()
