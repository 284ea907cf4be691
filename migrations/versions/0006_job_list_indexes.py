"""Indexes that serve the job list in its own order at any size.

The job list orders by ``created_at DESC, id DESC``.  The indexes it used ended at
``created_at``, so both engines sorted every matching row to break ties on ``id``
(SQLite: "USE TEMP B-TREE FOR RIGHT PART OF ORDER BY"), and a list filtered by
queue had no index in that order at all.  With ``id`` as the last column each
list reads its page straight off one index, and a deep page is skipped inside the
index (``benchmarks/scale.py``; docs/performance.md, "Reads at scale").

Revision ID: 0006_job_list_indexes
Revises: 0005_operators
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0006_job_list_indexes"
down_revision = "0005_operators"
branch_labels = None
depends_on = None

# (old name, old columns) -> (new name, new columns); None: no index before / after.
CHANGES = (
    (
        ("ix_jobs_org_created", ["organization_id", "created_at"]),
        ("ix_jobs_org_created_id", ["organization_id", "created_at", "id"]),
    ),
    (
        ("ix_jobs_org_status_created", ["organization_id", "status", "created_at"]),
        ("ix_jobs_org_status_created_id", ["organization_id", "status", "created_at", "id"]),
    ),
    (
        ("ix_jobs_queue_status_created", ["queue_id", "status", "created_at"]),
        ("ix_jobs_queue_status_created_id", ["queue_id", "status", "created_at", "id"]),
    ),
    (None, ("ix_jobs_queue_created_id", ["queue_id", "created_at", "id"])),
)


def upgrade() -> None:
    for old, (name, columns) in CHANGES:
        op.create_index(name, "jobs", columns, unique=False)
        if old is not None:
            op.drop_index(old[0], table_name="jobs")


def downgrade() -> None:
    for old, (name, _) in reversed(CHANGES):
        if old is not None:
            op.create_index(old[0], "jobs", old[1], unique=False)
        op.drop_index(name, table_name="jobs")
