"""The client verbs of ``taskforge``: through click's CliRunner and as real subprocesses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

import taskforge_client as tfc
from app.cli import main
from app.redis_server import free_port
from app.services.live_state import PREFIX
from taskforge_client.cli.config import Profile, load_profile, resolve, save_profile
from tests.client.conftest import PASSWORD, Signup, Stack
from tests.client.test_stack_rest import _expired_copy
from tests.support.workers import wait_for

CLIENT_ENV = ("TASKFORGE_URL", "TASKFORGE_TOKEN", "TASKFORGE_API_KEY", "TASKFORGE_PROFILE")
TASKFORGE = Path(sys.executable).with_name("taskforge")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Where the CLI keeps its profiles in this test."""
    return tmp_path / "taskforge" / "config.toml"


@pytest.fixture
def cli(config: Path) -> Callable[..., Result]:
    """Run ``taskforge ARGS`` in-process with a private config and no client variables."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, **env: str) -> Result:
        environment: dict[str, str | None] = dict.fromkeys(CLIENT_ENV)
        environment.update(TASKFORGE_CONFIG=str(config), **env)
        return runner.invoke(main, list(args), input=input, env=environment)

    return invoke


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


# --- without a server ---------------------------------------------------------------


def test_profiles_are_private_and_kept_apart(config: Path) -> None:
    save_profile("default", Profile(url="http://a", access_token="t1", refresh_token="r1"), config)
    save_profile("other", Profile(url="http://b", api_key="tf_k"), config)
    assert mode(config) == 0o600
    assert load_profile("default", config) == Profile("http://a", "t1", "r1", None)
    assert load_profile("other", config).api_key == "tf_k"
    assert load_profile("absent", config) == Profile()
    assert set(tomllib.loads(config.read_text())["profiles"]) == {"default", "other"}


def test_the_environment_wins_over_the_profile() -> None:
    profile = Profile(url="http://profile", access_token="t", refresh_token="r")
    assert resolve(profile, env={}).token == "t"
    from_env = resolve(profile, env={"TASKFORGE_URL": "http://env", "TASKFORGE_API_KEY": "k"})
    assert (from_env.url, from_env.api_key, from_env.token, from_env.from_profile) == (
        "http://env",
        "k",
        None,
        False,
    )
    assert resolve(profile, url="http://flag", env={"TASKFORGE_URL": "http://env"}).url == (
        "http://flag"
    )
    assert resolve(Profile(), env={}).url == "http://127.0.0.1:8000"


def test_bad_usage_exits_2_without_a_traceback(cli: Callable[..., Result]) -> None:
    bad_json = cli("submit", "q", "echo", "--payload", "{nope")
    assert bad_json.exit_code == 2 and "not JSON" in bad_json.stderr
    assert cli("tail").exit_code == 2
    assert cli("jobs", "--status", "sleeping").exit_code == 2
    assert cli("submit", "q", "echo", "--priority", "10").exit_code == 2


def test_an_unreachable_server_exits_3(cli: Callable[..., Result]) -> None:
    result = cli("queues", "--url", f"http://127.0.0.1:{free_port()}", TASKFORGE_API_KEY="k")
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: cannot reach the server")
    assert "Traceback" not in result.output


# --- against the stack --------------------------------------------------------------


@pytest.fixture
def logged_in(
    stack: Stack, signup: Callable[..., Signup], cli: Callable[..., Result], config: Path
) -> Signup:
    """A registered owner, logged in through ``taskforge login``."""
    owner = signup(stack.url)
    result = cli("login", "--url", stack.url, input=f"{owner.email}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    return owner


@pytest.mark.slow
@pytest.mark.real_workers
def test_login_stores_private_tokens(logged_in: Signup, config: Path, stack: Stack) -> None:
    assert mode(config) == 0o600
    profile = load_profile("default", config)
    assert profile.url == stack.url and profile.access_token and profile.refresh_token


@pytest.mark.slow
@pytest.mark.real_workers
def test_the_verbs_drive_jobs(logged_in: Signup, cli: Callable[..., Result]) -> None:
    tf = logged_in.client
    queue = tf.queues.create("cli")
    assert "cli" in cli("queues").stdout

    done = cli("submit", "cli", "echo", "--payload", '{"hello": "world"}', "--wait", "--json")
    assert done.exit_code == 0, done.output
    job = json.loads(done.stdout)
    assert (job["status"], job["result"]) == ("succeeded", {"hello": "world"})

    listed = cli("jobs", "--queue", "cli", "--status", "succeeded")
    assert job["id"] in listed.stdout and "page 1 of 1, 1 jobs" in listed.stdout
    assert json.loads(cli("jobs", "--json").stdout)["total"] == 1
    shown = cli("job", job["id"])
    assert "status:" in shown.stdout and "ATTEMPT" in shown.stdout

    failed = cli(
        "submit",
        queue.id,
        "fail",
        "--payload",
        '{"message": "no"}',
        "--max-attempts",
        "1",
        "--wait",
    )
    assert failed.exit_code == 4, failed.output
    failed_id = tf.jobs.list(status="failed").items[0].id
    assert cli("tail", failed_id).exit_code == 4
    again = cli("retry", failed_id)
    assert again.exit_code == 0 and "queued again" in again.stdout

    tf.queues.pause(queue)
    held = json.loads(cli("submit", "cli", "echo", "--json", "--idempotency-key", "k1").stdout)
    same = json.loads(cli("submit", "cli", "echo", "--json", "--idempotency-key", "k1").stdout)
    assert held["id"] == same["id"]
    assert "cancelled" in cli("cancel", held["id"]).stdout
    second = cli("cancel", held["id"])
    assert second.exit_code == 1 and second.stderr.startswith("error: ")
    assert "Traceback" not in second.output
    tf.queues.resume(queue)

    sleeper = tf.jobs.submit(queue, "sleep", {"seconds": 0.3})
    followed = cli("tail", sleeper.id)
    assert followed.exit_code == 0, followed.output
    assert followed.stdout.splitlines()[-1].endswith("status succeeded")


@pytest.mark.slow
@pytest.mark.real_workers
def test_api_errors_exit_1_with_the_message(logged_in: Signup, cli: Callable[..., Result]) -> None:
    missing = cli("job", "00000000-0000-0000-0000-000000000000")
    assert missing.exit_code == 1
    assert missing.stderr.splitlines()[0].startswith("error: ")
    nobody = cli("queues", "--profile", "nobody", "--url", logged_in.client.base_url)
    assert nobody.exit_code == 1 and "taskforge login" in nobody.stderr


@pytest.mark.slow
@pytest.mark.real_workers
def test_a_refresh_is_saved_to_the_profile(
    logged_in: Signup, cli: Callable[..., Result], config: Path
) -> None:
    before = load_profile("default", config)
    expired = _expired_copy(before.access_token or "")
    save_profile("default", Profile(before.url, expired, before.refresh_token), config)
    assert cli("queues").exit_code == 0
    after = load_profile("default", config)
    assert after.refresh_token != before.refresh_token and after.access_token != expired
    assert mode(config) == 0o600
    assert cli("queues").exit_code == 0  # the rotated tokens work; the old ones would not


@pytest.mark.slow
@pytest.mark.real_workers
def test_an_api_key_from_the_environment(
    logged_in: Signup, cli: Callable[..., Result], stack: Stack
) -> None:
    key = logged_in.client.api_keys.create("cli", ["queue:read", "job:read"]).key
    result = cli(
        "queues", "--json", "--profile", "nobody", TASKFORGE_URL=stack.url, TASKFORGE_API_KEY=key
    )
    assert result.exit_code == 0 and json.loads(result.stdout) == []


# --- real subprocesses ---------------------------------------------------------------


def run_taskforge(config: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """Start the installed ``taskforge`` command."""
    environment = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    environment.update(TASKFORGE_CONFIG=str(config), **env)
    return subprocess.Popen(
        [str(TASKFORGE), *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def subscribers(stack: Stack, organization_id: str) -> int:
    """How many event streams of the organization are open."""
    with redis.Redis.from_url(stack.settings.redis_url) as client:
        [(_, count)] = client.pubsub_numsub(f"{PREFIX}events:{organization_id}")
        return int(count)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Subprocesses a test starts; any still running is killed at teardown."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.slow
@pytest.mark.real_workers
def test_submit_wait_and_tail_as_real_commands(
    logged_in: Signup, config: Path, stack: Stack, processes: list[subprocess.Popen[str]]
) -> None:
    assert TASKFORGE.exists(), "the taskforge console script is not installed"
    tf = logged_in.client
    queue = tf.queues.create("sub")

    submit = run_taskforge(config, "submit", "sub", "echo", "--payload", "[1, 2]", "--wait")
    processes.append(submit)
    out, err = submit.communicate(timeout=120)
    assert submit.returncode == 0, err
    assert "succeeded" in out and "[1, 2]" in out

    tf.queues.pause(queue)
    job = tf.jobs.submit(queue, "sleep", {"seconds": 0.5})
    tail = run_taskforge(config, "tail", job.id, "--timeout", "120")
    processes.append(tail)
    wait_for(
        lambda: subscribers(stack, logged_in.organization_id) > 0 or tail.poll() is not None,
        30,
        "taskforge tail never opened the event stream",
    )
    tf.queues.resume(queue)
    out, err = tail.communicate(timeout=120)
    assert tail.returncode == 0, err
    lines = out.splitlines()
    assert "status pending" in lines[0]
    assert any(f"{job.id}  sleep  started" in line for line in lines), out
    assert "status succeeded" in lines[-1]


@pytest.mark.slow
@pytest.mark.real_workers
def test_tail_a_queue_as_a_real_command(
    logged_in: Signup, config: Path, stack: Stack, processes: list[subprocess.Popen[str]]
) -> None:
    tf = logged_in.client
    queue = tf.queues.create("tailed")
    tail = run_taskforge(config, "tail", "--queue", "tailed", "--timeout", "20", "--json")
    processes.append(tail)
    wait_for(
        lambda: subscribers(stack, logged_in.organization_id) > 0,
        30,
        "taskforge tail --queue never opened the event stream",
    )
    job = tf.jobs.wait(tf.jobs.submit(queue, "echo", "seen"), timeout=60)
    out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    events: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    states = [e["data"]["state"] for e in events if e["data"]["job_id"] == job.id]
    assert "succeeded" in states, out
    assert {e["data"]["queue_id"] for e in events} == {queue.id}
    assert job.status is tfc.JobStatus.SUCCEEDED
