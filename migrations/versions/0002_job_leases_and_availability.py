"""Job leases, availability time and indexes for the engine's queries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.drop_index("ix_jobs_queue_status")
        batch_op.create_index(
            "ix_jobs_queue_status_created", ["queue_id", "status", "created_at"], unique=False
        )
        batch_op.create_index("ix_jobs_queue_updated", ["queue_id", "updated_at"], unique=False)
        batch_op.create_index("ix_jobs_status_lease", ["status", "lease_expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_lease")
        batch_op.drop_index("ix_jobs_queue_updated")
        batch_op.drop_index("ix_jobs_queue_status_created")
        batch_op.create_index("ix_jobs_queue_status", ["queue_id", "status"], unique=False)
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("available_at")
