"""Sync-out's shared rate-limit bucket: one row per target, shared by every worker of the
target's consumer group (tokens refilled on read, a group-wide block after a 429).

Revision ID: 0002_sync_out
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_sync_out"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_out_rate_limit",
        sa.Column("target", sa.String(50), primary_key=True),
        sa.Column("rate_per_s", sa.Float, nullable=False),
        sa.Column("capacity", sa.Float, nullable=False),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refilled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()),
    )


def downgrade() -> None:
    op.drop_table("sync_out_rate_limit")
