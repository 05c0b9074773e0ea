"""Each entity's real outbound state per target, readable with plain SQL: the view
`entity_sync_status` (synced when the target holds the entity's current version, else the
target's own status: pending, retry or failed). It replaces `sync_master_data.sync_status`,
which sync-in alone wrote and which therefore only ever said "pending"; the column goes.

Revision ID: 0005_entity_sync_status
Revises: 0004_connector_cursors
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_entity_sync_status"
down_revision = "0004_connector_cursors"
branch_labels = None
depends_on = None

ENTITY_TABLES = {"location": "locations", "resident": "residents", "service_request": "service_requests",
                 "attachment": "attachments"}

VIEW = """
CREATE VIEW entity_sync_status AS
SELECT t.entity_type, t.entity_id, t.target, e.current_version, e.deleted, t.synced_version, t.sent_version,
       CASE WHEN t.synced_version >= e.current_version THEN 'synced'
            WHEN t.status IN ('retry', 'failed') THEN t.status
            ELSE 'pending' END AS status,
       t.attempts, t.next_retry_time, t.last_error, t.target_ref, t.updated_at
  FROM target_sync_state t
  JOIN ({entities}) e ON e.entity_type = t.entity_type AND e.entity_id = t.entity_id
"""


def upgrade() -> None:
    entities = " UNION ALL ".join(
        f"SELECT '{kind}'::varchar AS entity_type, entity_id, current_version, deleted FROM {table}"
        for kind, table in ENTITY_TABLES.items()
    )
    op.execute(VIEW.format(entities=entities))
    op.drop_column("sync_master_data", "sync_status")


def downgrade() -> None:
    op.add_column("sync_master_data", sa.Column("sync_status", sa.String(20), nullable=False, server_default="pending"))
    op.execute("DROP VIEW entity_sync_status")
