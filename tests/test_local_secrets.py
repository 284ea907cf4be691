"""Secrets made on first run under var/secrets/: random, private, stable, race-free."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.local_secrets import local_secret


def test_a_secret_is_made_once_and_read_back(tmp_path: Path) -> None:
    first = local_secret(tmp_path / "secrets", "jwt_secret_key")
    assert len(first) >= 40
    assert local_secret(tmp_path / "secrets", "jwt_secret_key") == first
    assert local_secret(tmp_path / "secrets", "metrics_token") != first


def test_only_the_owner_can_read_it(tmp_path: Path) -> None:
    local_secret(tmp_path / "secrets", "metrics_token")
    mode = (tmp_path / "secrets" / "metrics_token").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        values = set(pool.map(lambda _: local_secret(tmp_path, "shared"), range(32)))
    assert len(values) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]


def test_an_emptied_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret_key").write_text("")
    with pytest.raises(RuntimeError, match="delete it"):
        local_secret(tmp_path, "jwt_secret_key")
