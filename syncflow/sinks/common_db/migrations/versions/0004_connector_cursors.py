"""Connector cursors in the common database instead of a local folder: one row per source
stream, shared by every replica of a connector, so a connector started on a fresh machine
continues where the previous one stopped.

Revision ID: 0004_connector_cursors
Revises: 0003_sent_version
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004_connector_cursors"
down_revision = "0003_sent_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_cursors",
        sa.Column("source_system", sa.String(50), primary_key=True),
        sa.Column("stream", sa.String(300), primary_key=True),
        sa.Column("cursor", sa.Text),
        sa.Column("published", JSONB, nullable=False, server_default="{}"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("connector_cursors")
