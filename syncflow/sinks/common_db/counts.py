"""Named read-only queries of the common database for status, metrics and reconciliation:
counts per status, the outbox backlog, version gaps, the latest version per entity. Each
takes an open connection (or an engine) and returns plain values."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, text

_TABLES = text("SELECT table_name FROM information_schema.tables WHERE table_schema = :schema")
_HAS_PUBLISHED_AT = text(
    "SELECT count(*) FROM information_schema.columns WHERE table_schema = :schema "
    "AND table_name = 'data_versions' AND column_name = 'published_at'"
)
_OUTBOX_BACKLOG = text("SELECT count(*), extract(epoch FROM now() - min(created_date)) FROM data_versions "
                       "WHERE published_at IS NULL")
_UNPUBLISHED = text("SELECT count(*) FROM data_versions WHERE published_at IS NULL")
_VERSIONS = text("SELECT count(*) FROM data_versions")
_ENTITIES = text("SELECT count(DISTINCT (entity_type, entity_id)) FROM data_versions")
_GAPS = text(
    "SELECT entity_type, entity_id, count(*), min(version_number), max(version_number)"
    " FROM data_versions GROUP BY entity_type, entity_id"
    " HAVING count(*) <> max(version_number) OR min(version_number) <> 1"
)
_LATEST_HASH_PER_SOURCE = text(
    "SELECT DISTINCT ON (entity_type, entity_id, source_system) entity_type, entity_id, source_system, data_hash"
    " FROM data_versions ORDER BY entity_type, entity_id, source_system, version_number DESC"
)


def tables_in(engine: Engine, schema: str) -> set[str]:
    """The tables of `schema`."""
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(_TABLES, {"schema": schema})}


def status_rows(conn: Connection, schema: str) -> list[tuple[str, str, str, str, int, Any]]:
    """(side, entity_type, system, status, count, oldest) rows: sync-in's applied source
    records per source (a version made, or unchanged; refusals are in sync-in.dlq), and
    sync-out's real state of each entity per target (entity_sync_status: synced when the
    target holds the current version)."""
    sync_in = text(
        f"SELECT entity_type, source_system, 'applied', count(*), NULL FROM \"{schema}\".sync_master_data "
        "GROUP BY entity_type, source_system ORDER BY 1, 2"
    )
    sync_out = text(
        f'SELECT entity_type, target, status, count(*), min(updated_at) FROM "{schema}".entity_sync_status '
        "GROUP BY entity_type, target, status ORDER BY 1, 2, 3"
    )
    rows = []
    for side, query in (("sync-in", sync_in), ("sync-out", sync_out)):
        rows += [(side, *row) for row in conn.execute(query)]
    return rows  # type: ignore[return-value]


def parked_rows(conn: Connection, schema: str) -> list[tuple[str, int, Any]]:
    """(target, records parked for a reference, oldest parked_at) per target with any."""
    query = text(f'SELECT target, count(*), min(parked_at) FROM "{schema}".parked_dependents GROUP BY target ORDER BY 1')
    return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def unpublished_in(engine: Engine, schema: str) -> int | None:
    """Versions of `schema` committed but not yet published; None before the outbox column exists."""
    with engine.connect() as conn:
        if not conn.execute(_HAS_PUBLISHED_AT, {"schema": schema}).scalar():
            return None
        return int(conn.execute(text(f'SELECT count(*) FROM "{schema}".data_versions WHERE published_at IS NULL')).scalar() or 0)


def outbox_backlog(conn: Connection) -> tuple[int, float | None]:
    """Versions committed and not yet published, and the age in seconds of the oldest (read
    through the partial index on unpublished rows)."""
    count, oldest = conn.execute(_OUTBOX_BACKLOG).one()
    return int(count), None if oldest is None else max(0.0, float(oldest))


def version_counts(conn: Connection) -> tuple[int, int, int]:
    """(versions, entities versioned, versions not yet published)."""
    return (conn.execute(_VERSIONS).scalar_one(), conn.execute(_ENTITIES).scalar_one(),
            conn.execute(_UNPUBLISHED).scalar_one())


def version_count(conn: Connection) -> int:
    return int(conn.execute(_VERSIONS).scalar_one())


def version_gaps(conn: Connection) -> list[tuple[str, str, int, int, int]]:
    """(entity_type, entity_id, versions, lowest, highest) of entities whose versions are
    not exactly 1..n."""
    return [tuple(row) for row in conn.execute(_GAPS).all()]  # type: ignore[misc]


def latest_hash_per_source(conn: Connection) -> dict[tuple[str, str, str], str]:
    """(entity_type, entity_id, source) → the data hash of that source's latest version."""
    return {(r[0], r[1], r[2]): r[3] for r in conn.execute(_LATEST_HASH_PER_SOURCE)}


def latest_of_entities(conn: Connection, entity_types: list[str], *, not_from: str | None = None
                    ) -> dict[tuple[str, str], tuple[int, str, dict[str, str]]]:
    """(entity_type, entity_id) → (latest version, change type, references) of the entities
    of `entity_types`, skipping versions that came from source `not_from`."""
    origin_filter = "AND source_system <> :target" if not_from is not None else ""
    rows = conn.execute(text(
        "SELECT DISTINCT ON (entity_type, entity_id) entity_type, entity_id, version_number, change_type, \"references\""
        f" FROM data_versions WHERE entity_type = ANY(:types) {origin_filter}"
        " ORDER BY entity_type, entity_id, version_number DESC"), {"types": entity_types, "target": not_from})
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}
