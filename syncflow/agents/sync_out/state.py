"""Sync-out's memory in the common database: which version of each entity a target holds
(target_sync_state), written in batches, and per-entity advisory locks so two workers of a
group never deliver the same entity at once (a retry tier and a changes topic can be owned
by different workers)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert

from syncflow.agents.sync_out.decisions import EntityKey
from syncflow.sinks.common_db.models import TargetSyncState

_LOCK = text(
    "SELECT k, pg_try_advisory_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k"
)
_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k")

_FAILURE = text(
    """
    INSERT INTO target_sync_state (entity_type, entity_id, target, synced_version, status, attempts,
                                   next_retry_time, last_error, updated_at)
    VALUES (:entity_type, :entity_id, :target, 0, :status, :attempts, :next_retry_time, :last_error, now())
    ON CONFLICT (entity_type, entity_id, target) DO UPDATE
       SET status = excluded.status, attempts = excluded.attempts,
           next_retry_time = excluded.next_retry_time, last_error = excluded.last_error, updated_at = now()
     WHERE target_sync_state.synced_version < :version
    """
)


@dataclass(frozen=True)
class Synced:
    key: EntityKey
    version: int
    target_ref: str | None


@dataclass(frozen=True)
class Failed:
    key: EntityKey
    version: int
    status: str  # "retry" | "failed"
    attempts: int
    next_retry_time: datetime | None
    error: str


class SyncStateStore:
    """Reads and batched writes of one target's rows. Blocking: call off the event loop."""

    def __init__(self, engine: Engine, target: str):
        self.engine = engine
        self.target = target
        self._lock_conn: Connection | None = None

    def _lock_key(self, key: EntityKey) -> str:
        return f"sync-out|{self.target}|{key[0]}|{key[1]}"

    def lock(self, keys: list[EntityKey]) -> set[EntityKey]:
        """Try to lock the entities; returns those locked (others are busy in another worker)."""
        if not keys:
            return set()
        if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.invalidated:
            self._lock_conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        by_lock = {self._lock_key(k): k for k in keys}
        rows = self._lock_conn.execute(_LOCK, {"keys": list(by_lock)}).all()
        return {by_lock[k] for k, ok in rows if ok}

    def unlock(self, keys: Iterable[EntityKey]) -> None:
        lock_keys = [self._lock_key(k) for k in keys]
        if lock_keys and self._lock_conn is not None:
            self._lock_conn.execute(_UNLOCK, {"keys": lock_keys})

    def close(self) -> None:
        if self._lock_conn is not None:
            self._lock_conn.close()
            self._lock_conn = None

    def synced_versions(self, keys: Iterable[EntityKey]) -> dict[EntityKey, int]:
        """The version each entity has at the target (absent = never delivered)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        t = TargetSyncState
        stmt = select(t.entity_type, t.entity_id, t.synced_version).where(
            t.target == self.target, tuple_(t.entity_type, t.entity_id).in_(wanted)
        )
        with self.engine.connect() as conn:
            return {(et, eid): v for et, eid, v in conn.execute(stmt)}

    def record(self, synced: list[Synced], failed: list[Failed]) -> None:
        """Write the outcomes of one batch in one transaction. A version never moves back: an
        older success or failure does not overwrite what a newer version recorded."""
        with self.engine.begin() as conn:
            if synced:
                rows = {}
                for s in synced:  # one row per entity: the highest version wins
                    if s.key not in rows or rows[s.key]["synced_version"] < s.version:
                        rows[s.key] = {
                            "entity_type": s.key[0], "entity_id": s.key[1], "target": self.target,
                            "synced_version": s.version, "status": "synced", "attempts": 0,
                            "target_ref": s.target_ref,
                        }
                stmt = insert(TargetSyncState).values(sorted(rows.values(), key=lambda r: (r["entity_type"], r["entity_id"])))
                stmt = stmt.on_conflict_do_update(
                    index_elements=["entity_type", "entity_id", "target"],
                    set_={
                        "synced_version": stmt.excluded.synced_version,
                        "status": "synced",
                        "attempts": 0,
                        "next_retry_time": None,
                        "last_error": None,
                        "target_ref": func.coalesce(stmt.excluded.target_ref, TargetSyncState.target_ref),
                        "updated_at": func.now(),
                    },
                    where=TargetSyncState.synced_version < stmt.excluded.synced_version,
                )
                conn.execute(stmt)
            if failed:
                conn.execute(
                    _FAILURE,
                    [
                        {
                            "entity_type": f.key[0], "entity_id": f.key[1], "target": self.target,
                            "status": f.status, "attempts": f.attempts, "next_retry_time": f.next_retry_time,
                            "last_error": f.error[:2000], "version": f.version,
                        }
                        for f in sorted(failed, key=lambda f: f.key)
                    ],
                )
