"""The highest version sync-out has ever sent to a target, per entity: written before the
HTTP call, so an older version that was waiting in a retry tier is never sent after a newer
one the target may already hold — even when the worker died before recording the newer
one's success.

Revision ID: 0003_sent_version
Revises: 0002_sync_out
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_sent_version"
down_revision = "0002_sync_out"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("target_sync_state", sa.Column("sent_version", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("target_sync_state", "sent_version")
