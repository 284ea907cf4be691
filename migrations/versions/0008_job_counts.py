"""Exact job counts without counting: summary counters kept by triggers on ``jobs``.

``job_counts`` holds, per ``(organization_id, queue_id, status)``, how many jobs
there are; list totals, queue stats and organization job stats read it instead of
counting up to millions of index entries (docs/performance.md, "Reads at scale").
Triggers keep it in the transaction that changes ``jobs``, whatever the code path
(submit, batch insert, executor, sweeps, cancel, purge, redrive, cascades):

- SQLite (one writer at a time anyway) updates ``job_counts`` row by row.
- PostgreSQL appends ``+n``/``-n`` rows to ``job_count_deltas`` (per statement for
  INSERT and DELETE, through transition tables; per row for a status or queue
  change), so concurrent transactions never lock a shared counter row: no
  waiting, no deadlock.  ``app.services.job_counts.fold`` (beat) moves the deltas
  into ``job_counts``; a read sums both in one statement, exact in its snapshot.

The triggers are created before the backfill: on PostgreSQL ``CREATE TRIGGER``
blocks writes to ``jobs`` until this migration commits, so no change falls
between the two.  On SQLite a later ``batch_alter_table("jobs")`` rebuilds the
table and drops its triggers: such a migration must create them again
(``tests/test_migrations.py`` checks they exist at head).

Revision ID: 0008_job_counts
Revises: 0007_queue_control
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_job_counts"
down_revision = "0007_queue_control"
branch_labels = None
depends_on = None

STATUSES = ("pending", "scheduled", "processing", "succeeded", "failed", "cancelled")
KEY = "organization_id, queue_id, status"
# A change of status (or queue) moves a job from one counter to another.
CHANGED = (
    "OLD.status IS DISTINCT FROM NEW.status OR OLD.queue_id IS DISTINCT FROM NEW.queue_id "
    "OR OLD.organization_id IS DISTINCT FROM NEW.organization_id"
)

POSTGRESQL = (
    f"""
    CREATE FUNCTION job_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO job_count_deltas ({KEY}, n)
        SELECT {KEY}, count(*) FROM inserted GROUP BY {KEY};
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION job_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO job_count_deltas ({KEY}, n)
        SELECT {KEY}, -count(*) FROM deleted GROUP BY {KEY};
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION job_counts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO job_count_deltas ({KEY}, n) VALUES
            (OLD.organization_id, OLD.queue_id, OLD.status, -1),
            (NEW.organization_id, NEW.queue_id, NEW.status, 1);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION job_counts_inserted()
    """,
    """
    CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION job_counts_deleted()
    """,
    # Transition tables cannot go with a column list; per row, the WHEN clause
    # skips the many updates that change neither (leases, publication stamps).
    f"""
    CREATE TRIGGER job_counts_update AFTER UPDATE OF {KEY} ON jobs
    FOR EACH ROW WHEN ({CHANGED})
    EXECUTE FUNCTION job_counts_moved()
    """,
)
POSTGRESQL_DROP = (
    "DROP TRIGGER job_counts_update ON jobs",
    "DROP TRIGGER job_counts_delete ON jobs",
    "DROP TRIGGER job_counts_insert ON jobs",
    "DROP FUNCTION job_counts_moved()",
    "DROP FUNCTION job_counts_deleted()",
    "DROP FUNCTION job_counts_inserted()",
)


def _sqlite_add(row: str) -> str:
    return (
        f"INSERT INTO job_counts ({KEY}, n) "
        f"VALUES ({row}.organization_id, {row}.queue_id, {row}.status, 1) "
        f"ON CONFLICT ({KEY}) DO UPDATE SET n = n + 1;"
    )


def _sqlite_remove(row: str) -> str:
    return (
        f"UPDATE job_counts SET n = n - 1 WHERE organization_id = {row}.organization_id "
        f"AND queue_id = {row}.queue_id AND status = {row}.status;"
    )


SQLITE = (
    f"CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN {_sqlite_add('NEW')} END",
    f"CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN {_sqlite_remove('OLD')} END",
    f"""
    CREATE TRIGGER job_counts_update AFTER UPDATE OF {KEY} ON jobs
    WHEN {CHANGED.replace("IS DISTINCT FROM", "IS NOT")}
    BEGIN {_sqlite_remove("OLD")} {_sqlite_add("NEW")} END
    """,
)
SQLITE_DROP = (
    "DROP TRIGGER job_counts_update",
    "DROP TRIGGER job_counts_delete",
    "DROP TRIGGER job_counts_insert",
)


def _status() -> sa.Enum:
    return sa.Enum(*STATUSES, name="jobstatus", native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "job_counts",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("queue_id", sa.Uuid(), nullable=False),
        sa.Column("status", _status(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "queue_id", "status", name=op.f("pk_job_counts")
        ),
    )
    op.create_table(
        "job_count_deltas",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("queue_id", sa.Uuid(), nullable=False),
        sa.Column("status", _status(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_job_count_deltas_org_queue", "job_count_deltas", ["organization_id", "queue_id"]
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL if postgres else SQLITE:
        op.execute(statement)
    op.execute(f"INSERT INTO job_counts ({KEY}, n) SELECT {KEY}, count(*) FROM jobs GROUP BY {KEY}")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DROP if postgres else SQLITE_DROP:
        op.execute(statement)
    op.drop_index("ix_job_count_deltas_org_queue", table_name="job_count_deltas")
    op.drop_table("job_count_deltas")
    op.drop_table("job_counts")
