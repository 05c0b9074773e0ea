"""Reads and writes of the common database for anti-entropy (reconcile) and resync: each
selected entity's latest version with what sync-out recorded about it for one target, and the
forced-resend mark that lets sync-out send a version the target was recorded as holding.

Why the mark is needed: sync-out skips a version at or below `target_sync_state.synced_version`
as stale, so the entity's latest version, re-sent as is, would be dropped by the worker.
`force_resend` lowers `synced_version` from exactly that version to the one before, only when
nothing newer was sent (`sent_version <= version`): the worker then sends it, records it as
synced again, and every safety of the normal path holds (locks, the sent_version
compare-and-set, dependencies, order). A newer version committed meanwhile still wins: it is
sent with a higher version, and the re-sent one is then stale (below sent_version)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from syncflow.model import EntityKey, NewVersion
from syncflow.sinks.common_db.repository import _version_from_row

# The property code of each entity type's row `e`: a location's own, else its location's (an
# attachment's through its service request).
PROPERTY_OF: dict[str, tuple[str, str]] = {
    "location": ("locations", "e.property_code"),
    "resident": ("residents", "(SELECT l.property_code FROM locations l WHERE l.entity_id = e.location_id)"),
    "service_request": ("service_requests", "(SELECT l.property_code FROM locations l WHERE l.entity_id = e.location_id)"),
    "attachment": ("attachments", "(SELECT l.property_code FROM service_requests r JOIN locations l "
                                  "ON l.entity_id = r.location_id WHERE r.entity_id = e.service_request_id)"),
}

_LATEST = """
    SELECT dv.*, e.deleted AS entity_deleted, {property} AS property_code,
           s.synced_version, s.sent_version, s.status AS sync_status
      FROM {table} e
      JOIN data_versions dv
        ON dv.entity_type = :entity_type AND dv.entity_id = e.entity_id AND dv.version_number = e.current_version
      LEFT JOIN target_sync_state s
        ON s.entity_type = :entity_type AND s.entity_id = e.entity_id AND s.target = :target
     WHERE e.current_version > 0
       AND (CAST(:property AS text) IS NULL OR {property} = CAST(:property AS text))
       AND (CAST(:since AS timestamptz) IS NULL OR dv.created_date >= CAST(:since AS timestamptz))
       AND (CAST(:ids AS text[]) IS NULL OR e.entity_id = ANY(CAST(:ids AS text[])))
     ORDER BY e.entity_id
"""

_KNOWN = "SELECT entity_id FROM {table} WHERE current_version > 0 AND entity_id = ANY(CAST(:ids AS text[]))"

# Lower synced_version from exactly the latest version to the one before, when nothing newer
# was sent; report per key whether it is now sendable (lowered, or never recorded as held).
_FORCE = text(
    """
    WITH k AS (
        SELECT * FROM unnest(CAST(:types AS text[]), CAST(:ids AS text[]), CAST(:versions AS int[]))
               AS u(entity_type, entity_id, version)
    ), lowered AS (
        UPDATE target_sync_state s
           SET synced_version = k.version - 1, status = 'pending', updated_at = now()
          FROM k
         WHERE s.target = :target AND s.entity_type = k.entity_type AND s.entity_id = k.entity_id
           AND s.synced_version = k.version AND s.sent_version <= k.version
        RETURNING s.entity_type, s.entity_id
    )
    SELECT k.entity_type, k.entity_id,
           l.entity_id IS NOT NULL
           OR s.entity_id IS NULL
           OR (s.synced_version < k.version AND s.sent_version <= k.version) AS sendable
      FROM k
      LEFT JOIN lowered l ON l.entity_type = k.entity_type AND l.entity_id = k.entity_id
      LEFT JOIN target_sync_state s
        ON s.target = :target AND s.entity_type = k.entity_type AND s.entity_id = k.entity_id
    """
)

# Undo a lowering whose resend never reached Kafka (nothing delivered it meanwhile).
_UNFORCE = text(
    """
    UPDATE target_sync_state s
       SET synced_version = k.version, status = 'synced', updated_at = now()
      FROM unnest(CAST(:types AS text[]), CAST(:ids AS text[]), CAST(:versions AS int[])) AS k(entity_type, entity_id, version)
     WHERE s.target = :target AND s.entity_type = k.entity_type AND s.entity_id = k.entity_id
       AND s.synced_version = k.version - 1 AND s.sent_version <= k.version
    """
)


@dataclass(frozen=True)
class Selection:
    """Which entities: of these types, optionally of one property, whose latest version was
    committed at or after `since`, or only these ids."""

    entity_types: tuple[str, ...]
    property_code: str | None = None
    since: datetime | None = None
    ids: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, object]:
        return {"entity_types": list(self.entity_types), "property": self.property_code,
                "since": self.since.isoformat() if self.since else None,
                "ids": list(self.ids) if self.ids is not None else None}


@dataclass(frozen=True)
class Latest:
    """An entity's latest version, and what sync-out recorded about it for the target."""

    version: NewVersion
    deleted: bool
    property_code: str | None
    synced_version: int | None  # None: sync-out never recorded anything for it
    sent_version: int | None
    sync_status: str | None

    @property
    def key(self) -> EntityKey:
        return (self.version.entity_type, self.version.entity_id)


def latest_versions(engine: Engine, target: str, selection: Selection) -> list[Latest]:
    """The latest version of every selected entity (placeholders, which have none, left out),
    by entity type in the order given, then by id."""
    out: list[Latest] = []
    params = {"target": target, "property": selection.property_code, "since": selection.since,
              "ids": list(selection.ids) if selection.ids is not None else None}
    with engine.connect() as conn:
        for entity_type in selection.entity_types:
            table, prop = PROPERTY_OF[entity_type]
            rows = conn.execute(text(_LATEST.format(table=table, property=prop)), {**params, "entity_type": entity_type})
            for row in rows:
                m = row._mapping
                out.append(Latest(_version_from_row(m), bool(m["entity_deleted"]), m["property_code"],
                                  m["synced_version"], m["sent_version"], m["sync_status"]))
    return out


def known_entities(engine: Engine, entity_type: str, ids: Iterable[str]) -> set[str]:
    """Which of these ids are entities of the common database with a version."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    with engine.connect() as conn:
        return set(conn.execute(text(_KNOWN.format(table=PROPERTY_OF[entity_type][0])), {"ids": wanted}).scalars())


def _params(target: str, versions: dict[EntityKey, int]) -> dict[str, object]:
    keys = sorted(versions)
    return {"target": target, "types": [k[0] for k in keys], "ids": [k[1] for k in keys], "versions": [versions[k] for k in keys]}


def force_resend(engine: Engine, target: str, versions: dict[EntityKey, int]) -> set[EntityKey]:
    """Make these (latest) versions sendable to `target` again; returns the entities that are,
    the others have a newer version sent already (resending would be stale anyway)."""
    if not versions:
        return set()
    with engine.begin() as conn:
        rows = conn.execute(_FORCE, _params(target, versions)).all()
    return {(t, i) for t, i, sendable in rows if sendable}


def unforce_resend(engine: Engine, target: str, versions: dict[EntityKey, int]) -> None:
    """Put back what force_resend lowered, for resends Kafka did not take."""
    if versions:
        with engine.begin() as conn:
            conn.execute(_UNFORCE, _params(target, versions))


def keys_of(items: Sequence[Latest]) -> dict[EntityKey, int]:
    return {i.key: i.version.version_number for i in items}
