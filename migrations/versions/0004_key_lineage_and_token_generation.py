"""API key lineage and per-user token generations.

- ``api_keys.created_by_key_id``: the key that minted a key, so revoking a key reaches
  what it minted; both creator columns are indexed for those cascades.
- ``users.token_generation``: raised by a password change to end every session.
- Keys without a creator user (minted by a key before lineage was kept, or whose user
  was deleted) authenticate nobody from now on, so they are marked revoked; the
  downgrade leaves them revoked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_by_key_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_created_by_key_id_api_keys"),
            "api_keys",
            ["created_by_key_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(
            batch_op.f("ix_api_keys_created_by_key_id"), ["created_by_key_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_api_keys_created_by_id"), ["created_by_id"], unique=False
        )
    api_keys = sa.table(
        "api_keys",
        sa.column("created_by_id", sa.Uuid()),
        sa.column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        api_keys.update()
        .where(api_keys.c.created_by_id.is_(None), api_keys.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_created_by_id"))
        batch_op.drop_index(batch_op.f("ix_api_keys_created_by_key_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_api_keys_created_by_key_id_api_keys"), type_="foreignkey"
        )
        batch_op.drop_column("created_by_key_id")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_generation")
