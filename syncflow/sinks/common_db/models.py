"""SQLAlchemy models of the common database: the single versioned truth between sync-in and
sync-out.

Tables carry no schema name: the engine's search_path points at `settings.database_schema`,
so one model set serves every schema (tests use a fresh one each)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class SyncMasterData(Base):
    """One row per (canonical entity, source system): what that source last said (its hash)."""

    __tablename__ = "sync_master_data"
    __table_args__ = (UniqueConstraint("entity_type", "entity_id", "source_system", name="uq_master_entity_source"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    entity_type: Mapped[str] = mapped_column(String(50), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(100), nullable=False)
    source_system: Mapped[str] = mapped_column(String(50), nullable=False)
    source_id: Mapped[str] = mapped_column(String(200), nullable=False)
    data_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    source_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # orders replays
    last_sync_attempt: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_attempt_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    error_message: Mapped[str | None] = mapped_column(Text)
    created_date: Mapped[datetime] = _now()
    modified_date: Mapped[datetime] = _now()


class DataVersion(Base):
    """One committed version of a canonical entity. `published_at` is the outbox marker:
    NULL until its change event has been acknowledged by Kafka."""

    __tablename__ = "data_versions"
    __table_args__ = (
        UniqueConstraint("entity_type", "entity_id", "version_number", name="uq_version_entity_number"),
        Index(
            "ix_data_versions_unpublished",
            "entity_type",
            "entity_id",
            "version_number",
            postgresql_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    master_data_id: Mapped[int] = mapped_column(ForeignKey("sync_master_data.id"), nullable=False, index=True)
    entity_type: Mapped[str] = mapped_column(String(50), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(100), nullable=False)
    version_number: Mapped[int] = mapped_column(Integer, nullable=False)
    data_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    change_type: Mapped[str] = mapped_column(String(10), nullable=False)
    data_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default="5")
    changed_fields: Mapped[list[str]] = mapped_column(JSONB, nullable=False)
    references: Mapped[dict[str, str]] = mapped_column(JSONB, nullable=False, server_default="{}")
    source_system: Mapped[str] = mapped_column(String(50), nullable=False)
    source_id: Mapped[str] = mapped_column(String(200), nullable=False)
    trace_id: Mapped[str | None] = mapped_column(String(100))
    created_date: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class _EntityColumns:
    """Columns every processed entity table has."""

    entity_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    source_system: Mapped[str | None] = mapped_column(String(50))
    source_id: Mapped[str | None] = mapped_column(String(200))
    source_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    placeholder: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    created_date: Mapped[datetime] = _now()
    modified_date: Mapped[datetime] = _now()


class Location(_EntityColumns, Base):
    __tablename__ = "locations"

    location_type: Mapped[str | None] = mapped_column(String(20))
    property_code: Mapped[str | None] = mapped_column(String(50))
    unit_code: Mapped[str | None] = mapped_column(String(50))
    parent_location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.entity_id"), index=True)
    name: Mapped[str | None] = mapped_column(String(300))
    address_line1: Mapped[str | None] = mapped_column(String(300))
    address_line2: Mapped[str | None] = mapped_column(String(300))
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(10))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str | None] = mapped_column(String(20))


class ResidentialDetails(Base):
    """The residential part of a unit (absent for properties)."""

    __tablename__ = "residential_details"

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.entity_id"), primary_key=True)
    bedrooms: Mapped[int | None] = mapped_column(Integer)
    bathrooms: Mapped[float | None] = mapped_column(Numeric(4, 1))
    square_feet: Mapped[int | None] = mapped_column(Integer)
    market_rent: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    occupancy_status: Mapped[str | None] = mapped_column(String(20))
    modified_date: Mapped[datetime] = _now()


class Resident(_EntityColumns, Base):
    __tablename__ = "residents"

    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.entity_id"), index=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(30))
    move_in_date: Mapped[date | None] = mapped_column(Date)
    move_out_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str | None] = mapped_column(String(20))


class ServiceRequest(_EntityColumns, Base):
    __tablename__ = "service_requests"

    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.entity_id"), index=True)
    resident_id: Mapped[str | None] = mapped_column(ForeignKey("residents.entity_id"), index=True)
    category: Mapped[str | None] = mapped_column(String(50))
    subcategory: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    requestor_name: Mapped[str | None] = mapped_column(String(200))
    requestor_phone: Mapped[str | None] = mapped_column(String(30))
    requestor_email: Mapped[str | None] = mapped_column(String(300))
    permission_to_enter: Mapped[bool | None] = mapped_column(Boolean)
    access_notes: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Attachment(_EntityColumns, Base):
    __tablename__ = "attachments"

    service_request_id: Mapped[str | None] = mapped_column(ForeignKey("service_requests.entity_id"), index=True)
    file_name: Mapped[str | None] = mapped_column(String(500))
    content_type: Mapped[str | None] = mapped_column(String(200))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    url: Mapped[str | None] = mapped_column(Text)
    uploaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TargetSyncState(Base):
    """Sync-out's per-target delivery state of one canonical entity (written by sync-out)."""

    __tablename__ = "target_sync_state"

    entity_type: Mapped[str] = mapped_column(String(50), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    target: Mapped[str] = mapped_column(String(50), primary_key=True)
    synced_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # the highest version ever handed to the target (written before the call): no older one follows it
    sent_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_retry_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    target_ref: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = _now()


class ConnectorCursor(Base):
    """Where one connector stream left off (written by the connectors, once the broker
    acknowledged what it covers), shared by every replica of the connector. `published`:
    raw key -> [modified ms, content digest] of the records published inside the window the
    next pass re-reads (see syncflow/connectors/cursor.py)."""

    __tablename__ = "connector_cursors"

    source_system: Mapped[str] = mapped_column(String(50), primary_key=True)
    stream: Mapped[str] = mapped_column(String(300), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    published: Mapped[dict[str, list[Any]]] = mapped_column(JSONB, nullable=False, server_default="{}")
    updated_at: Mapped[datetime] = _now()


ENTITY_MODELS: dict[str, type[_EntityColumns]] = {
    "location": Location,
    "resident": Resident,
    "service_request": ServiceRequest,
    "attachment": Attachment,
}
"""Canonical entity type -> its processed table, in parent-before-child order (the order
rows are locked and written in, so concurrent workers never deadlock)."""

PARENT_REFERENCES: dict[str, list[tuple[str, str]]] = {
    "location": [("parent_location_id", "location")],
    "resident": [("location_id", "location")],
    "service_request": [("location_id", "location"), ("resident_id", "resident")],
    "attachment": [("service_request_id", "service_request")],
}
"""Per entity type: (foreign-key column, entity type it points at)."""


class ParkedDependent(Base):
    """A change event sync-out parked in the target's DLQ because a reference never reached
    the target in time, with what it waits for; released into the dependency lane once the
    target holds every one of them (sinks/common_db/parked.py, migration 0007)."""

    __tablename__ = "parked_dependents"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(50), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(50), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(100), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    waiting_for_types: Mapped[list[str]] = mapped_column(ARRAY(String(50)), nullable=False)
    waiting_for_ids: Mapped[list[str]] = mapped_column(ARRAY(String(100)), nullable=False)
    record_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    record_value: Mapped[bytes | None] = mapped_column(LargeBinary)
    record_headers: Mapped[list[list[str]]] = mapped_column(JSONB, nullable=False, server_default="[]")
    parked_at: Mapped[datetime] = _now()
