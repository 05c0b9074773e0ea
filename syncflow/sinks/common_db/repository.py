"""Set-based writes of the common database: a whole batch of canonical records becomes
master rows, entity rows (with placeholder parents) and new versions in one transaction, and
the outbox side (unpublished versions) is read and marked here too.

Every statement covers the batch (INSERT ... VALUES over all rows ... ON CONFLICT, joins
with unnest() over the batch's keys), one statement per table per batch; entity
rows are locked per table in a fixed order (parents first, ids sorted) so workers that meet
the same entity wait for each other instead of deadlocking."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Table, func, select, tuple_, update
from sqlalchemy.orm import Session

from syncflow.model import EntityKey, EntityRecord, NewVersion
from syncflow.sinks.common_db.models import (
    ENTITY_MODELS,
    PARENT_REFERENCES,
    DataVersion,
    ResidentialDetails,
)
from syncflow.sinks.common_db.rows import data_columns, entity_row, entity_table, parent_ids, residential_row
from syncflow.sinks.common_db.versioning import (
    DELETE,
    EntityHead,
    MasterKey,
    MasterState,
    PlannedVersion,
    is_news,
    plan_versions,
)

_versions: Table = DataVersion.__table__  # type: ignore[assignment]
_residential: Table = ResidentialDetails.__table__  # type: ignore[assignment]


def upsert_versions(session: Session, items: Sequence[EntityRecord]) -> list[NewVersion]:
    """Apply a batch of canonical records in the session's transaction, in the order given.

    Unchanged records (same hash as their source last sent) write nothing. The returned
    versions are unpublished: the caller publishes them after the commit."""
    if not items:
        return []
    heads = _lock_entities(session, items)
    masters = _load_master_states(session, items)
    changing = {
        (i.entity_type, i.entity_id) for i in items if is_news(i, masters.get((i.entity_type, i.entity_id, i.source_system)))
    }
    if not changing:
        return []
    heads = _with_snapshots(session, {k: v for k, v in heads.items() if k in changing})
    planned = plan_versions(items, heads, masters)
    if not planned:
        return []
    master_ids = _upsert_master_rows(session, items, planned)
    created = _insert_versions(session, items, planned, master_ids)
    _write_entity_rows(session, items, planned)
    return created


def _cursor(session: Session) -> Any:
    """A psycopg2 cursor on the session's connection (same transaction): the batch
    statements below are fixed SQL sent with `execute_values`, one statement per table per
    batch, instead of SQLAlchemy's executemany (row by row with RETURNING) or per-batch
    compilation of multi-row VALUES."""
    return session.connection().connection.cursor()


def _values(cur: Any, sql: str, rows: list[tuple[Any, ...]], template: str | None = None, *, fetch: bool = False) -> list[tuple[Any, ...]]:
    """`INSERT ... VALUES %s` over all rows in one statement (page_size = the batch)."""
    if not rows:
        return []
    out = execute_values(cur, sql, rows, template=template, page_size=len(rows), fetch=fetch)
    return list(out or [])


def _select_by_keys(session: Session, sql: str, keys: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Run `sql` with one array parameter per key column (unnest): one round trip however
    many keys. The queries look each key up in a LATERAL subquery with LIMIT 1, which the
    planner runs as one unique-index lookup per key whatever its statistics say; a plain
    join with unnest turned into a nested loop over a sequential scan when the statistics
    predated a burst of new rows (seconds per batch)."""
    if not keys:
        return []
    with _cursor(session) as cur:
        cur.execute(sql, [list(column) for column in zip(*keys)])
        return cur.fetchall()


def _lock_entities(session: Session, items: Sequence[EntityRecord]) -> dict[EntityKey, EntityHead]:
    """Ensure a row exists for every entity and referenced parent (a placeholder where the
    real record has not arrived), locking them table by table in id order."""
    wanted: dict[str, set[str]] = {t: set() for t in ENTITY_MODELS}
    for item in items:
        wanted[item.entity_type].add(item.entity_id)
        for column, parent_id in parent_ids(item.entity_type, item.entity, item.references).items():
            wanted[_parent_type(item.entity_type, column)].add(parent_id)
    heads: dict[EntityKey, EntityHead] = {}
    with _cursor(session) as cur:
        for entity_type, ids in wanted.items():
            if not ids:
                continue
            name = entity_table(entity_type).name
            # rows are inserted, hence locked, in the order of the VALUES list: sorted ids
            rows = _values(
                cur,
                f"INSERT INTO {name} (entity_id, placeholder) VALUES %s ON CONFLICT (entity_id) "
                "DO UPDATE SET entity_id = excluded.entity_id RETURNING entity_id, current_version, deleted",
                [(i,) for i in sorted(ids)],
                "(%s, true)",
                fetch=True,
            )
            for entity_id, current_version, deleted in rows:
                heads[(entity_type, entity_id)] = EntityHead(current_version=current_version, deleted=deleted)
    return heads


def _parent_type(entity_type: str, column: str) -> str:
    return dict(PARENT_REFERENCES[entity_type])[column]


def _load_master_states(session: Session, items: Sequence[EntityRecord]) -> dict[MasterKey, MasterState]:
    keys = sorted({(i.entity_type, i.entity_id, i.source_system) for i in items})
    rows = _select_by_keys(
        session,
        "SELECT k.t, k.e, k.s, m.data_hash, m.source_updated_at "
        "FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(t, e, s) CROSS JOIN LATERAL "
        "(SELECT data_hash, source_updated_at FROM sync_master_data "
        " WHERE entity_type = k.t AND entity_id = k.e AND source_system = k.s LIMIT 1) m",
        keys,
    )
    return {(t, e, s): MasterState(h, u) for t, e, s, h, u in rows}


def _with_snapshots(session: Session, heads: dict[EntityKey, EntityHead]) -> dict[EntityKey, EntityHead]:
    """Add the latest snapshot to the heads that have versions (for changed_fields)."""
    keys = [(t, e, h.current_version) for (t, e), h in heads.items() if h.current_version > 0]
    if not keys:
        return heads
    rows = _select_by_keys(
        session,
        "SELECT k.t, k.e, v.data_snapshot "
        "FROM unnest(%s::text[], %s::text[], %s::int[]) AS k(t, e, n) CROSS JOIN LATERAL "
        "(SELECT data_snapshot FROM data_versions "
        " WHERE entity_type = k.t AND entity_id = k.e AND version_number = k.n LIMIT 1) v",
        keys,
    )
    out = dict(heads)
    for entity_type, entity_id, snapshot in rows:
        head = heads[(entity_type, entity_id)]
        out[(entity_type, entity_id)] = EntityHead(head.current_version, head.deleted, snapshot)
    return out


def _upsert_master_rows(
    session: Session, items: Sequence[EntityRecord], planned: list[PlannedVersion]
) -> dict[MasterKey, int]:
    last: dict[MasterKey, EntityRecord] = {}
    for p in planned:
        item = items[p.item_index]
        last[(item.entity_type, item.entity_id, item.source_system)] = item
    rows = [(k[0], k[1], k[2], item.source_id, item.data_hash, item.source_updated_at) for k, item in sorted(last.items())]
    with _cursor(session) as cur:
        made = _values(
            cur,
            "INSERT INTO sync_master_data (entity_type, entity_id, source_system, source_id, data_hash, "
            "source_updated_at, last_sync_attempt, sync_attempt_count) VALUES %s "
            "ON CONFLICT ON CONSTRAINT uq_master_entity_source DO UPDATE SET source_id = excluded.source_id, "
            "data_hash = excluded.data_hash, source_updated_at = excluded.source_updated_at, "
            "last_sync_attempt = now(), sync_attempt_count = sync_master_data.sync_attempt_count + 1, "
            "error_message = NULL, modified_date = now() "
            "RETURNING id, entity_type, entity_id, source_system",
            rows,
            "(%s, %s, %s, %s, %s, %s, now(), 1)",
            fetch=True,
        )
    return {(t, e, s): i for i, t, e, s in made}


def _insert_versions(
    session: Session,
    items: Sequence[EntityRecord],
    planned: list[PlannedVersion],
    master_ids: dict[MasterKey, int],
) -> list[NewVersion]:
    rows = []
    for p in planned:
        item = items[p.item_index]
        rows.append((
            master_ids[(item.entity_type, item.entity_id, item.source_system)],
            p.entity_type, p.entity_id, p.version_number, _json(p.snapshot), p.change_type, item.data_hash,
            item.priority, _json(p.changed_fields), _json(dict(item.references)), item.source_system,
            item.source_id, item.trace_id,
        ))
    with _cursor(session) as cur:
        made = _values(
            cur,
            'INSERT INTO data_versions (master_data_id, entity_type, entity_id, version_number, data_snapshot, '
            'change_type, data_hash, priority, changed_fields, "references", source_system, source_id, trace_id) '
            "VALUES %s RETURNING entity_type, entity_id, version_number, id, created_date",
            rows,
            "(%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s)",
            fetch=True,
        )
    # matched by (entity, version), unique: RETURNING's row order is not promised
    by_key = {(t, e, n): (vid, created) for t, e, n, vid, created in made}
    out = []
    for p in planned:
        item = items[p.item_index]
        vid, created = by_key[(p.entity_type, p.entity_id, p.version_number)]
        out.append(
            NewVersion(
                id=vid,
                entity_type=p.entity_type,
                entity_id=p.entity_id,
                version_number=p.version_number,
                change_type=p.change_type,
                changed_fields=p.changed_fields,
                snapshot=p.snapshot,
                priority=item.priority,
                references=dict(item.references),
                source_system=item.source_system,
                source_id=item.source_id,
                trace_id=item.trace_id,
                data_hash=item.data_hash,
                created_date=created,
                item_index=p.item_index,
            )
        )
    return out


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _write_entity_rows(session: Session, items: Sequence[EntityRecord], planned: list[PlannedVersion]) -> None:
    """Bring each changed entity row to its last planned version, parents' tables first."""
    final: dict[EntityKey, PlannedVersion] = {}
    for p in planned:
        final[(p.entity_type, p.entity_id)] = p
    with _cursor(session) as cur:
        for entity_type in ENTITY_MODELS:
            mine = [p for (t, _), p in sorted(final.items()) if t == entity_type]
            if not mine:
                continue
            name = entity_table(entity_type).name
            live = [p for p in mine if p.change_type != DELETE]
            gone = [p for p in mine if p.change_type == DELETE]
            if live:
                cols = data_columns(entity_type)
                rows = []
                for p in live:
                    item = items[p.item_index]
                    row = entity_row(entity_type, item.entity)
                    row.update(parent_ids(entity_type, item.entity, item.references))
                    row.update(source_system=item.source_system, source_id=item.source_id)
                    rows.append((p.entity_id, p.version_number, *(row.get(c) for c in cols)))
                quoted = ", ".join(f'"{c}"' for c in cols)
                _values(
                    cur,
                    f"INSERT INTO {name} (entity_id, current_version, {quoted}, deleted, placeholder) VALUES %s "
                    "ON CONFLICT (entity_id) DO UPDATE SET "
                    + ", ".join(f'"{c}" = excluded."{c}"' for c in cols)
                    + ", current_version = excluded.current_version, deleted = false, placeholder = false, "
                    "modified_date = now()",
                    rows,
                    "(" + ", ".join(["%s"] * (len(cols) + 2)) + ", false, false)",
                )
                if entity_type == "location":
                    _write_residential(cur, items, live)
            if gone:
                _values(
                    cur,
                    f"UPDATE {name} SET current_version = v.version, deleted = true, placeholder = false, "
                    f"modified_date = now() FROM (VALUES %s) AS v(entity_id, version) WHERE {name}.entity_id = v.entity_id",
                    [(p.entity_id, p.version_number) for p in gone],
                    "(%s, %s::int)",
                )


def _write_residential(cur: Any, items: Sequence[EntityRecord], live: list[PlannedVersion]) -> None:
    rows, without = [], []
    for p in live:
        row = residential_row(p.entity_id, items[p.item_index].entity)
        if row:
            rows.append(row)
        else:
            without.append(p.entity_id)
    if rows:
        cols = [c.name for c in _residential.columns if c.name != "modified_date"]
        _values(
            cur,
            f"INSERT INTO residential_details ({', '.join(cols)}) VALUES %s ON CONFLICT (location_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in cols if c != "location_id")
            + ", modified_date = now()",
            [tuple(r.get(c) for c in cols) for r in rows],
        )
    if without:
        cur.execute("DELETE FROM residential_details WHERE location_id = ANY(%s)", [without])


# -- the outbox side --------------------------------------------------------------------


def lock_unpublished(
    session: Session, entities: Iterable[EntityKey] | None = None, *, limit: int = 1000, skip_locked: bool = False
) -> list[NewVersion]:
    """Unpublished versions in version order, locked until the session ends. With
    `entities`, only theirs (all of them, older ones included, so nothing overtakes);
    `skip_locked` lets a sweeper pass over rows another worker is publishing."""
    c = _versions.c
    stmt = select(_versions).where(c.published_at.is_(None))
    if entities is not None:
        keys = sorted(set(entities))
        if not keys:
            return []
        stmt = stmt.where(tuple_(c.entity_type, c.entity_id).in_(keys))
    stmt = stmt.order_by(c.entity_type, c.entity_id, c.version_number).limit(limit)
    stmt = stmt.with_for_update(skip_locked=skip_locked)
    return [_version_from_row(r._mapping) for r in session.execute(stmt).all()]


def mark_published(session: Session, version_ids: Sequence[int]) -> None:
    if version_ids:
        session.execute(
            update(_versions).where(_versions.c.id.in_(list(version_ids))).values(published_at=func.now())
        )


def _version_from_row(row: Any) -> NewVersion:
    return NewVersion(
        id=row["id"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        version_number=row["version_number"],
        change_type=row["change_type"],
        changed_fields=list(row["changed_fields"]),
        snapshot=row["data_snapshot"],
        priority=row["priority"],
        references=dict(row["references"]),
        source_system=row["source_system"],
        source_id=row["source_id"],
        trace_id=row["trace_id"],
        data_hash=row["data_hash"],
        created_date=row["created_date"],
    )


def lock_unpublished_for_sweep(session: Session, *, limit: int = 1000) -> list[NewVersion]:
    """Unpublished versions nobody else is publishing, per entity only an unbroken run
    from its oldest unpublished version (a version whose predecessor is locked elsewhere
    waits, so a sweep never overtakes a worker that is publishing)."""
    locked = lock_unpublished(session, None, limit=limit, skip_locked=True)
    if not locked:
        return []
    c = _versions.c
    keys = sorted({(v.entity_type, v.entity_id) for v in locked})
    oldest = dict(
        ((t, e), n)
        for t, e, n in session.execute(
            select(c.entity_type, c.entity_id, func.min(c.version_number))
            .where(c.published_at.is_(None), tuple_(c.entity_type, c.entity_id).in_(keys))
            .group_by(c.entity_type, c.entity_id)
        ).all()
    )
    out: list[NewVersion] = []
    expected: dict[EntityKey, int] = {}
    for v in locked:
        key = (v.entity_type, v.entity_id)
        want = expected.get(key, oldest.get(key))
        if v.version_number == want:
            out.append(v)
            expected[key] = want + 1
        else:
            expected[key] = -1  # a gap: leave the rest of this entity for later
    return out
