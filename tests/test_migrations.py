"""Alembic migrations are the schema: they match the models and run down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db import get_engine
from app.migrate import alembic_config, upgrade
from app.models import Base


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
        "ix_jobs_status_published",
        "ix_jobs_status_lease",
        "ix_jobs_status_held",
    } <= indexes


def test_downgrade_to_base_and_upgrade_again(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    assert inspect(get_engine(url)).get_table_names() == ["alembic_version"]
    upgrade(url)
    assert "jobs" in inspect(get_engine(url)).get_table_names()
