"""Set-based writes of the common database: a whole batch of canonical records becomes
master rows, entity rows (with placeholder parents) and new versions in one transaction, and
the outbox side (unpublished versions) is read and marked here too.

Every statement covers the batch (INSERT ... ON CONFLICT, IN over the batch's keys); entity
rows are locked per table in a fixed order (parents first, ids sorted) so workers that meet
the same entity wait for each other instead of deadlocking."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from syncflow.sinks.common_db.models import (
    ENTITY_MODELS,
    PARENT_REFERENCES,
    DataVersion,
    ResidentialDetails,
    SyncMasterData,
)
from syncflow.sinks.common_db.rows import data_columns, entity_row, entity_table, parent_ids, residential_row
from syncflow.sinks.common_db.versioning import (
    DELETE,
    EntityHead,
    EntityKey,
    EntityRecord,
    MasterKey,
    MasterState,
    PlannedVersion,
    is_news,
    plan_versions,
)

_master: Table = SyncMasterData.__table__  # type: ignore[assignment]
_versions: Table = DataVersion.__table__  # type: ignore[assignment]
_residential: Table = ResidentialDetails.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class NewVersion:
    """A committed version as the outbox publishes it."""

    id: int
    entity_type: str
    entity_id: str
    version_number: int
    change_type: str
    changed_fields: list[str]
    snapshot: dict[str, Any]
    priority: int
    references: dict[str, str]
    source_system: str
    source_id: str
    trace_id: str | None
    data_hash: str
    created_date: datetime
    item_index: int | None = None  # position of the input record that made it (upsert_versions only)

    @property
    def event_id(self) -> str:
        return f"{self.entity_id}:{self.version_number}"


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


def _lock_entities(session: Session, items: Sequence[EntityRecord]) -> dict[EntityKey, EntityHead]:
    """Ensure a row exists for every entity and referenced parent (a placeholder where the
    real record has not arrived), locking them table by table in id order."""
    wanted: dict[str, set[str]] = {t: set() for t in ENTITY_MODELS}
    for item in items:
        wanted[item.entity_type].add(item.entity_id)
        for column, parent_id in parent_ids(item.entity_type, item.entity, item.references).items():
            wanted[_parent_type(item.entity_type, column)].add(parent_id)
    heads: dict[EntityKey, EntityHead] = {}
    for entity_type, ids in wanted.items():
        if not ids:
            continue
        table = entity_table(entity_type)
        stmt = insert(table).values(entity_id=bindparam("eid"), placeholder=True)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.entity_id], set_={"entity_id": stmt.excluded.entity_id}
        ).returning(table.c.entity_id, table.c.current_version, table.c.deleted)
        rows = session.execute(stmt, [{"eid": i} for i in sorted(ids)]).all()
        for entity_id, current_version, deleted in rows:
            heads[(entity_type, entity_id)] = EntityHead(current_version=current_version, deleted=deleted)
    return heads


def _parent_type(entity_type: str, column: str) -> str:
    return dict(PARENT_REFERENCES[entity_type])[column]


def _load_master_states(session: Session, items: Sequence[EntityRecord]) -> dict[MasterKey, MasterState]:
    keys = sorted({(i.entity_type, i.entity_id, i.source_system) for i in items})
    c = _master.c
    rows = session.execute(
        select(c.entity_type, c.entity_id, c.source_system, c.data_hash, c.source_updated_at).where(
            tuple_(c.entity_type, c.entity_id, c.source_system).in_(keys)
        )
    ).all()
    return {(t, e, s): MasterState(h, u) for t, e, s, h, u in rows}


def _with_snapshots(session: Session, heads: dict[EntityKey, EntityHead]) -> dict[EntityKey, EntityHead]:
    """Add the latest snapshot to the heads that have versions (for changed_fields)."""
    keys = [(t, e, h.current_version) for (t, e), h in heads.items() if h.current_version > 0]
    if not keys:
        return heads
    c = _versions.c
    rows = session.execute(
        select(c.entity_type, c.entity_id, c.data_snapshot).where(
            tuple_(c.entity_type, c.entity_id, c.version_number).in_(keys)
        )
    ).all()
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
    stmt = insert(_master).values(
        entity_type=bindparam("t"),
        entity_id=bindparam("e"),
        source_system=bindparam("s"),
        source_id=bindparam("sid"),
        data_hash=bindparam("h"),
        source_updated_at=bindparam("u"),
        sync_status="pending",
        last_sync_attempt=func.now(),
        sync_attempt_count=1,
    )
    stmt = stmt.on_conflict_do_update(
        constraint="uq_master_entity_source",
        set_={
            "source_id": stmt.excluded.source_id,
            "data_hash": stmt.excluded.data_hash,
            "source_updated_at": stmt.excluded.source_updated_at,
            "sync_status": "pending",
            "last_sync_attempt": func.now(),
            "sync_attempt_count": _master.c.sync_attempt_count + 1,
            "error_message": None,
            "modified_date": func.now(),
        },
    ).returning(_master.c.id, _master.c.entity_type, _master.c.entity_id, _master.c.source_system)
    params = [
        {"t": k[0], "e": k[1], "s": k[2], "sid": item.source_id, "h": item.data_hash, "u": item.source_updated_at}
        for k, item in sorted(last.items())
    ]
    return {(t, e, s): i for i, t, e, s in session.execute(stmt, params).all()}


def _insert_versions(
    session: Session,
    items: Sequence[EntityRecord],
    planned: list[PlannedVersion],
    master_ids: dict[MasterKey, int],
) -> list[NewVersion]:
    params = []
    for p in planned:
        item = items[p.item_index]
        params.append(
            {
                "master_data_id": master_ids[(item.entity_type, item.entity_id, item.source_system)],
                "entity_type": p.entity_type,
                "entity_id": p.entity_id,
                "version_number": p.version_number,
                "data_snapshot": p.snapshot,
                "change_type": p.change_type,
                "data_hash": item.data_hash,
                "priority": item.priority,
                "changed_fields": p.changed_fields,
                "references": dict(item.references),
                "source_system": item.source_system,
                "source_id": item.source_id,
                "trace_id": item.trace_id,
            }
        )
    c = _versions.c
    rows = session.execute(
        insert(_versions).returning(c.id, c.created_date, sort_by_parameter_order=True), params
    ).all()
    out = []
    for p, param, (vid, created) in zip(planned, params, rows, strict=True):
        out.append(
            NewVersion(
                id=vid,
                entity_type=p.entity_type,
                entity_id=p.entity_id,
                version_number=p.version_number,
                change_type=p.change_type,
                changed_fields=p.changed_fields,
                snapshot=p.snapshot,
                priority=param["priority"],
                references=param["references"],
                source_system=param["source_system"],
                source_id=param["source_id"],
                trace_id=param["trace_id"],
                data_hash=param["data_hash"],
                created_date=created,
                item_index=p.item_index,
            )
        )
    return out


def _write_entity_rows(session: Session, items: Sequence[EntityRecord], planned: list[PlannedVersion]) -> None:
    """Bring each changed entity row to its last planned version, parents' tables first."""
    final: dict[EntityKey, PlannedVersion] = {}
    for p in planned:
        final[(p.entity_type, p.entity_id)] = p
    for entity_type in ENTITY_MODELS:
        mine = [p for (t, _), p in sorted(final.items()) if t == entity_type]
        if not mine:
            continue
        table = entity_table(entity_type)
        live = [p for p in mine if p.change_type != DELETE]
        gone = [p for p in mine if p.change_type == DELETE]
        if live:
            rows = []
            for p in live:
                item = items[p.item_index]
                row = entity_row(entity_type, item.entity)
                row.update(parent_ids(entity_type, item.entity, item.references))
                row.update(source_system=item.source_system, source_id=item.source_id)
                rows.append({"entity_id": p.entity_id, "current_version": p.version_number, **row})
            stmt = insert(table)
            cols = data_columns(entity_type)
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.entity_id],
                set_={
                    **{c: stmt.excluded[c] for c in cols},
                    "current_version": stmt.excluded.current_version,
                    "deleted": False,
                    "placeholder": False,
                    "modified_date": func.now(),
                },
            )
            session.execute(stmt, [{**dict.fromkeys(cols), **r, "deleted": False, "placeholder": False} for r in rows])
            if entity_type == "location":
                _write_residential(session, items, live)
        if gone:
            c = table.c
            session.execute(
                update(table)
                .where(c.entity_id == bindparam("eid"))
                .values(
                    current_version=bindparam("v"),
                    deleted=True,
                    placeholder=False,
                    modified_date=func.now(),
                ),
                [{"eid": p.entity_id, "v": p.version_number} for p in gone],
            )


def _write_residential(session: Session, items: Sequence[EntityRecord], live: list[PlannedVersion]) -> None:
    rows, without = [], []
    for p in live:
        row = residential_row(p.entity_id, items[p.item_index].entity)
        if row:
            rows.append(row)
        else:
            without.append(p.entity_id)
    if rows:
        stmt = insert(_residential)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_residential.c.location_id],
            set_={
                **{c.name: stmt.excluded[c.name] for c in _residential.columns if c.name != "location_id"},
                "modified_date": func.now(),
            },
        )
        session.execute(stmt, rows)
    if without:
        session.execute(_residential.delete().where(_residential.c.location_id.in_(without)))


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
