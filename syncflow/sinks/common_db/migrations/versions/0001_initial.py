"""The common database: master data, versions (with the outbox marker), processed entities
and sync-out's per-target state.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _entity_columns() -> list[sa.Column]:
    return [
        sa.Column("entity_id", sa.String(100), primary_key=True),
        sa.Column("source_system", sa.String(50)),
        sa.Column("source_id", sa.String(200)),
        _ts("source_updated_at"),
        sa.Column("current_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("placeholder", sa.Boolean, nullable=False, server_default="false"),
        _now("created_date"),
        _now("modified_date"),
    ]


def upgrade() -> None:
    op.create_table(
        "sync_master_data",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("entity_type", sa.String(50), nullable=False),
        sa.Column("entity_id", sa.String(100), nullable=False),
        sa.Column("source_system", sa.String(50), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("data_hash", sa.String(128), nullable=False),
        _ts("source_updated_at"),
        sa.Column("sync_status", sa.String(20), nullable=False, server_default="pending"),
        _ts("last_sync_attempt"),
        sa.Column("sync_attempt_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_message", sa.Text),
        _now("created_date"),
        _now("modified_date"),
        sa.UniqueConstraint("entity_type", "entity_id", "source_system", name="uq_master_entity_source"),
    )
    op.create_table(
        "data_versions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("master_data_id", sa.BigInteger, sa.ForeignKey("sync_master_data.id"), nullable=False),
        sa.Column("entity_type", sa.String(50), nullable=False),
        sa.Column("entity_id", sa.String(100), nullable=False),
        sa.Column("version_number", sa.Integer, nullable=False),
        sa.Column("data_snapshot", JSONB, nullable=False),
        sa.Column("change_type", sa.String(10), nullable=False),
        sa.Column("data_hash", sa.String(128), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="5"),
        sa.Column("changed_fields", JSONB, nullable=False),
        sa.Column("references", JSONB, nullable=False, server_default="{}"),
        sa.Column("source_system", sa.String(50), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("trace_id", sa.String(100)),
        _now("created_date"),
        _ts("published_at"),
        sa.UniqueConstraint("entity_type", "entity_id", "version_number", name="uq_version_entity_number"),
        sa.CheckConstraint("change_type IN ('create', 'update', 'delete')", name="ck_version_change_type"),
        sa.CheckConstraint("version_number >= 1", name="ck_version_number_positive"),
    )
    op.create_index("ix_data_versions_master_data_id", "data_versions", ["master_data_id"])
    op.create_index(
        "ix_data_versions_unpublished",
        "data_versions",
        ["entity_type", "entity_id", "version_number"],
        postgresql_where=sa.text("published_at IS NULL"),
    )

    op.create_table(
        "locations",
        *_entity_columns(),
        sa.Column("location_type", sa.String(20)),
        sa.Column("property_code", sa.String(50)),
        sa.Column("unit_code", sa.String(50)),
        sa.Column("parent_location_id", sa.String(100), sa.ForeignKey("locations.entity_id")),
        sa.Column("name", sa.String(300)),
        sa.Column("address_line1", sa.String(300)),
        sa.Column("address_line2", sa.String(300)),
        sa.Column("city", sa.String(100)),
        sa.Column("state", sa.String(10)),
        sa.Column("postal_code", sa.String(20)),
        sa.Column("country", sa.String(2)),
        sa.Column("status", sa.String(20)),
    )
    op.create_index("ix_locations_parent_location_id", "locations", ["parent_location_id"])
    op.create_table(
        "residential_details",
        sa.Column("location_id", sa.String(100), sa.ForeignKey("locations.entity_id"), primary_key=True),
        sa.Column("bedrooms", sa.Integer),
        sa.Column("bathrooms", sa.Numeric(4, 1)),
        sa.Column("square_feet", sa.Integer),
        sa.Column("market_rent", sa.Numeric(12, 2)),
        sa.Column("occupancy_status", sa.String(20)),
        _now("modified_date"),
    )
    op.create_table(
        "residents",
        *_entity_columns(),
        sa.Column("location_id", sa.String(100), sa.ForeignKey("locations.entity_id")),
        sa.Column("first_name", sa.String(200)),
        sa.Column("last_name", sa.String(200)),
        sa.Column("email", sa.String(300)),
        sa.Column("phone", sa.String(30)),
        sa.Column("move_in_date", sa.Date),
        sa.Column("move_out_date", sa.Date),
        sa.Column("status", sa.String(20)),
    )
    op.create_index("ix_residents_location_id", "residents", ["location_id"])
    op.create_table(
        "service_requests",
        *_entity_columns(),
        sa.Column("location_id", sa.String(100), sa.ForeignKey("locations.entity_id")),
        sa.Column("resident_id", sa.String(100), sa.ForeignKey("residents.entity_id")),
        sa.Column("category", sa.String(50)),
        sa.Column("subcategory", sa.String(100)),
        sa.Column("priority", sa.Integer),
        sa.Column("status", sa.String(20)),
        sa.Column("description", sa.Text),
        sa.Column("requestor_name", sa.String(200)),
        sa.Column("requestor_phone", sa.String(30)),
        sa.Column("requestor_email", sa.String(300)),
        sa.Column("permission_to_enter", sa.Boolean),
        sa.Column("access_notes", sa.Text),
        _ts("requested_at"),
        _ts("completed_at"),
    )
    op.create_index("ix_service_requests_location_id", "service_requests", ["location_id"])
    op.create_index("ix_service_requests_resident_id", "service_requests", ["resident_id"])
    op.create_table(
        "attachments",
        *_entity_columns(),
        sa.Column("service_request_id", sa.String(100), sa.ForeignKey("service_requests.entity_id")),
        sa.Column("file_name", sa.String(500)),
        sa.Column("content_type", sa.String(200)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("url", sa.Text),
        _ts("uploaded_at"),
    )
    op.create_index("ix_attachments_service_request_id", "attachments", ["service_request_id"])

    op.create_table(
        "target_sync_state",
        sa.Column("entity_type", sa.String(50), primary_key=True),
        sa.Column("entity_id", sa.String(100), primary_key=True),
        sa.Column("target", sa.String(50), primary_key=True),
        sa.Column("synced_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _ts("next_retry_time"),
        sa.Column("last_error", sa.Text),
        sa.Column("target_ref", sa.String(200)),
        _now("updated_at"),
        sa.CheckConstraint("status IN ('pending', 'synced', 'failed', 'retry')", name="ck_target_sync_status"),
    )


def downgrade() -> None:
    for table in (
        "target_sync_state",
        "attachments",
        "service_requests",
        "residents",
        "residential_details",
        "locations",
        "data_versions",
        "sync_master_data",
    ):
        op.drop_table(table)
