"""Records sync-out parked because a reference never reached the target in time:
`parked_dependents`, one row per parked change event with what it waits for. Every sync-out
worker releases the rows whose references its target now holds back into the dependency
lane (sinks/common_db/parked.py), so a reference that comes late still brings its
dependants along; the DLQ keeps the record of the park.

Revision ID: 0007_parked_dependents
Revises: 0006_pauses
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0007_parked_dependents"
down_revision = "0006_pauses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parked_dependents",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(50), nullable=False),
        sa.Column("entity_type", sa.String(50), nullable=False),
        sa.Column("entity_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("waiting_for_types", ARRAY(sa.String(50)), nullable=False),
        sa.Column("waiting_for_ids", ARRAY(sa.String(100)), nullable=False),
        sa.Column("record_key", sa.LargeBinary),
        sa.Column("record_value", sa.LargeBinary),
        sa.Column("record_headers", JSONB, nullable=False, server_default="[]"),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_parked_dependents_target", "parked_dependents", ["target", "id"])


def downgrade() -> None:
    op.drop_table("parked_dependents")
