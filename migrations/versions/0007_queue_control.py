"""Queue control: the audit trail, dead-letter redrive lineage and dispatch policies.

- ``audit_events``: who paused, resumed, purged, redrove or bulk-changed what, when,
  and how many jobs it touched; listed per organization, newest first.
- ``jobs.redriven_from``: the failed job a redriven job re-runs; ``jobs.redrive_id``:
  the redrive (its audit event) that made it, so a redrive that fails again stops.
- ``queues.policy``: rate and concurrency limits of the queue and its job types.

Revision ID: 0007_queue_control
Revises: 0006_job_list_indexes
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_queue_control"
down_revision = "0006_job_list_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target_type", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_audit_events_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_audit_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_audit_events_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(
        "ix_audit_events_org_created", "audit_events", ["organization_id", "created_at"]
    )
    op.create_index(
        "ix_audit_events_org_action_created",
        "audit_events",
        ["organization_id", "action", "created_at"],
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("redriven_from", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("redrive_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_redriven_from_jobs"),
            "jobs",
            ["redriven_from"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_unique_constraint(batch_op.f("uq_jobs_redriven_from"), ["redriven_from"])
        batch_op.create_index("ix_jobs_redrive", ["redrive_id", "status"])
    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "policy",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.drop_column("policy")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_redrive")
        batch_op.drop_constraint(batch_op.f("uq_jobs_redriven_from"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_jobs_redriven_from_jobs"), type_="foreignkey")
        batch_op.drop_column("redrive_id")
        batch_op.drop_column("redriven_from")
    op.drop_index("ix_audit_events_org_action_created", table_name="audit_events")
    op.drop_index("ix_audit_events_org_created", table_name="audit_events")
    op.drop_table("audit_events")
