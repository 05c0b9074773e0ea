"""Operator pauses: `pauses`, one row per paused scope. A sync-out scope is a target (side
'sync-out', system = target), a sync-in scope a source (side 'sync-in', system = source),
each optionally narrowed to one property and/or one entity type ('' = every one, so the
scope is a plain unique key). Written by `syncflow pause` / `syncflow resume`, read by
every worker every few seconds (sinks/common_db/pauses.py, agents/pauses.py).

Revision ID: 0006_pauses
Revises: 0005_entity_sync_status
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_pauses"
down_revision = "0005_entity_sync_status"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("system", sa.String(50), nullable=False),
        sa.Column("property", sa.String(50), nullable=False, server_default=""),
        sa.Column("entity_type", sa.String(50), nullable=False, server_default=""),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("paused_by", sa.String(200), nullable=False, server_default=""),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("side", "system", "property", "entity_type"),
        sa.CheckConstraint("side IN ('sync-in', 'sync-out')", name="pauses_side"),
    )


def downgrade() -> None:
    op.drop_table("pauses")
