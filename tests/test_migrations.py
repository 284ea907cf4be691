"""Alembic migrations are the schema: they match the models and run down and up again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from app.db import get_engine, session_scope
from app.migrate import alembic_config, upgrade
from app.models import Base, JobStatus
from app.services import job_counts, outbox
from tests.support import factories


def test_migrations_match_the_models(database_url: str) -> None:
    with get_engine(database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        assert compare_metadata(context, Base.metadata) == []


def test_engine_indexes_exist(database_url: str) -> None:
    indexes = {ix["name"] for ix in inspect(get_engine(database_url)).get_indexes("jobs")}
    assert {
        "ix_jobs_org_status_created_id",
        "ix_jobs_org_created_id",
        "ix_jobs_queue_status_created_id",
        "ix_jobs_queue_created_id",
        "ix_jobs_unpublished",
        "ix_jobs_pending_published",
        "ix_jobs_lease",
        "ix_jobs_held",
        "ix_jobs_redrive",
    } <= indexes


def test_the_job_counters_triggers_exist(database_url: str) -> None:
    """A migration that rebuilds ``jobs`` (SQLite batch mode) must create them again."""
    engine = get_engine(database_url)
    query = (
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'jobs'::regclass AND NOT tgisinternal"
        if engine.dialect.name == "postgresql"
        else "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'"
    )
    with engine.connect() as connection:
        names = set(connection.execute(text(query)).scalars())
    assert names == {"job_counts_insert", "job_counts_update", "job_counts_delete"}


def test_downgrade_to_base_and_upgrade_again(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    assert inspect(get_engine(url)).get_table_names() == ["alembic_version"]
    upgrade(url)
    assert "jobs" in inspect(get_engine(url)).get_table_names()


def test_the_job_counters_start_from_the_jobs_already_there(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'backfill.db'}"
    monkeypatch.setattr(outbox, "_publisher", factories.RecordingPublisher())
    upgrade(url)
    with session_scope(url) as session:
        actor = factories.actor_of(factories.register(session).user)
        queue = factories.queue(session, actor)
        for _ in range(3):
            factories.job(session, actor, queue)
    # Back to before the counters (their tables go), and up again: the jobs are counted.
    config = alembic_config(url)
    before = ScriptDirectory.from_config(config).get_revision("0008_job_counts").down_revision
    command.downgrade(config, str(before))
    upgrade(url)
    with session_scope(url) as session:
        factories.job(session, actor, queue)
        counts = job_counts.count_jobs(session, actor.organization_id, queue_id=queue.id)
    assert counts[JobStatus.PENDING] == 4
