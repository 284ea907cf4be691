"""An upgrade while old workers run: the newest migration is applied under a worker of the
release before it, and no job fails, runs twice or is lost (docs/deployment.md, "Upgrades").

The old release is the repository as it was before the newest migration was added, taken
from git.  Its worker and its REST API run from that tree; ``taskforge migrate`` runs from
this one.  This holds only while every migration expands the schema (new tables, new
nullable or defaulted columns, new indexes) and leaves the contraction for a later release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from app.config import PROJECT_ROOT
from app.db import get_engine
from app.migrate import alembic_config, upgrade
from app.redis_server import RedisProcess
from tests.conftest import POSTGRES_URL
from tests.support.workers import wait_for

pytestmark = pytest.mark.slow

# Runs in the old tree: log in (the first time: register and make a queue), then submit
# sleep jobs through the old release's REST API.  Prints the job ids.
OLD_CLIENT = """
import json, sys
try:
    from app.api.app import create_app  # since the core moved out of app/__init__
except ImportError:
    from app import create_app
client = create_app().test_client()
account = {"email": "old@example.com", "password": "correct horse battery"}
if sys.argv[1] == "first":
    client.post("/api/v1/auth/register", json={**account, "organization_name": "Old"})
token = client.post("/api/v1/auth/login", json=account).json["access_token"]
headers = {"Authorization": f"Bearer {token}"}
if sys.argv[1] == "first":
    client.post("/api/v1/queues", json={"name": "upgrade"}, headers=headers)
ids = []
for _ in range(int(sys.argv[2])):
    job = client.post("/api/v1/jobs", headers=headers, json={
        "queue_name": "upgrade", "job_type": "sleep", "payload": {"seconds": 0.2}})
    assert job.status_code == 201, job.json
    ids.append(job.json["id"])
print(json.dumps(ids))
"""


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, timeout=60)


def _old_release(tmp_path: Path) -> tuple[Path, str, str]:
    """The tree before the newest migration, its schema revision and the newest one."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    newest = script.get_revision(script.get_current_head())
    assert newest is not None and isinstance(newest.down_revision, str)
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("needs the repository's git history for the previous release")
    relative = Path(newest.path).relative_to(PROJECT_ROOT)
    # Along main's first parents, with merges compared to their first parent: a
    # migration that arrived (or was renumbered) in a merge counts as added there.
    added = _git(
        "log", "--first-parent", "-m", "--diff-filter=A", "--format=%H", "-1", "--", str(relative)
    )
    # Not committed yet: the old release is the last commit.
    commit = f"{added.stdout.decode().strip()}^" if added.stdout.strip() else "HEAD"
    archive = _git("archive", "--format=tar", commit)
    assert archive.returncode == 0, archive.stderr.decode()
    tree = tmp_path / "old-release"
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree, newest.down_revision, newest.revision


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (a schema of its own on PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    schema = f"upgrade_{uuid.uuid4().hex[:8]}"
    with get_engine(POSTGRES_URL).begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with get_engine(POSTGRES_URL).begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def test_the_newest_migration_applies_under_a_running_worker_of_the_release_before(
    fresh_database: str, redis_server: RedisProcess, tmp_path: Path, output_dir: Path
) -> None:
    old_tree, old_revision, new_revision = _old_release(tmp_path)
    upgrade(fresh_database, old_revision)
    env = {
        **os.environ,
        "PYTHONPATH": str(old_tree),  # the old release's modules, not this tree's
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": fresh_database,
        "REDIS_URL": redis_server.url,
        "TASKFORGE_VAR_DIR": str(tmp_path / "var"),
        "TASKFORGE_RATE_LIMIT_ENABLED": "false",
    }

    def old_client(step: str, jobs: int) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", OLD_CLIENT, step, str(jobs)],
            cwd=old_tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    old_client("first", 0)  # the organization and its queue, before the worker starts
    log_path = output_dir / "old-worker.log"
    with log_path.open("wb") as log:
        old_worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.celery_app", "worker", "-l", "info",
             "-P", "solo",
             "-n", "old@%h", "--without-gossip", "--without-mingle"],
            cwd=old_tree, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: " ready." in log_path.read_text(), 60, log_path.read_text()[-3000:])
        before = old_client("again", 20)
        migrate = subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"],
            cwd=PROJECT_ROOT,
            env={**env, "PYTHONPATH": ""},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        after = old_client("again", 10)

        def statuses() -> dict[str, tuple[str, int]]:
            with get_engine(fresh_database).connect() as connection:
                rows = connection.execute(text("SELECT id, status, attempt_count FROM jobs"))
                return {str(uuid.UUID(str(r.id))): (r.status, r.attempt_count) for r in rows}

        wait_for(
            lambda: all(s == "succeeded" for s, _ in statuses().values()),
            120,
            f"jobs did not all succeed: {statuses()}\n{log_path.read_text()[-3000:]}",
            interval=0.5,
        )
        assert old_worker.poll() is None, log_path.read_text()[-3000:]
    finally:
        old_worker.terminate()
        old_worker.wait(60)
    assert statuses() == dict.fromkeys(before + after, ("succeeded", 1))
    with get_engine(fresh_database).connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            new_revision
        )
    assert "Traceback" not in log_path.read_text()
