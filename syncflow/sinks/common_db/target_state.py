"""Sync-out's memory in the common database: which version of each entity a target holds
(target_sync_state), written in batches, and per-entity advisory locks so two workers of a
group never deliver the same entity at once (a retry tier and a changes topic can be owned
by different workers).

The locks are session locks of one connection; their keys include the database schema, so
workers of different schemas (tests, a demo) on the same entity ids do not block each other.
The record of what is about to be sent (`claim`) runs on that same connection and checks, in
the same statement, that the session still holds each entity's lock: a session lost to a
database restart holds none, and nothing is sent on the strength of a lock it lost."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from syncflow.model import EntityKey
from syncflow.errors import LocksLostError
from syncflow.sinks.common_db.models import TargetSyncState

TARGET_REF_MAX: int = TargetSyncState.__table__.c.target_ref.type.length  # type: ignore[attr-defined]

_LOCK = text(
    "SELECT k, pg_try_advisory_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k"
)
_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k")

# Arrays in, one statement out: a batch of hundreds costs one round trip and no statement compile.
# One primary-key lookup per key (LATERAL ... LIMIT 1), whatever the table's statistics say: a
# plain join with unnest became a nested loop over a sequential scan when the statistics
# predated a new target's first rows (~1 s per batch at 20,000 rows of another target).
_VERSIONS = text(
    """
    SELECT k.entity_type, k.entity_id, t.synced_version, t.sent_version
      FROM unnest(CAST(:types AS text[]), CAST(:ids AS text[])) AS k(entity_type, entity_id)
     CROSS JOIN LATERAL (
           SELECT s.synced_version, s.sent_version FROM target_sync_state s
            WHERE s.entity_type = k.entity_type AND s.entity_id = k.entity_id AND s.target = :target
            LIMIT 1) t
    """
)

_SYNCED = text(
    """
    INSERT INTO target_sync_state AS s (entity_type, entity_id, target, synced_version, status, attempts, target_ref, updated_at)
    SELECT k.entity_type, k.entity_id, :target, k.version, 'synced', 0, k.ref, now()
      FROM unnest(CAST(:types AS text[]), CAST(:ids AS text[]), CAST(:versions AS int[]), CAST(:refs AS text[]))
           AS k(entity_type, entity_id, version, ref)
    ON CONFLICT (entity_type, entity_id, target) DO UPDATE
       SET synced_version = excluded.synced_version, status = 'synced', attempts = 0,
           next_retry_time = NULL, last_error = NULL,
           target_ref = COALESCE(excluded.target_ref, s.target_ref), updated_at = now()
     WHERE s.synced_version < excluded.synced_version
    """
)

# The compare-and-set before a call: sent_version moves to the version about to be sent only
# when no newer version was sent or delivered meanwhile; RETURNING says which rows it wrote (a
# row not written is a stale version, not sent). With :check_locks, nothing is written unless
# this session holds every entity's advisory lock, and each row says whether it was held
# (pg_locks shows a bigint key as classid = its high 32 bits, objid = its low 32 bits,
# objsubid = 1; this session's few locks are read once and compared as keys).
_SENDING = text(
    """
    WITH k AS (
        SELECT u.entity_type, u.entity_id, u.version, hashtextextended(u.lock_key, 0) AS lock_id
          FROM unnest(CAST(:types AS text[]), CAST(:ids AS text[]), CAST(:versions AS int[]),
                      CAST(:lock_keys AS text[])) AS u(entity_type, entity_id, version, lock_key)
    ), mine AS (
        SELECT (l.classid::bigint << 32) | l.objid::bigint AS lock_id FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.objsubid = 1
    ), held AS (
        SELECT k.entity_type, k.entity_id, k.version FROM k
         WHERE NOT CAST(:check_locks AS boolean) OR k.lock_id IN (SELECT lock_id FROM mine)
    ), written AS (
        INSERT INTO target_sync_state AS s (entity_type, entity_id, target, sent_version, status, updated_at)
        SELECT h.entity_type, h.entity_id, :target, h.version, 'pending', now() FROM held h
         WHERE (SELECT count(*) FROM held) = (SELECT count(*) FROM k)  -- a lock lost: write nothing
        ON CONFLICT (entity_type, entity_id, target) DO UPDATE
           SET sent_version = excluded.sent_version, status = 'pending', updated_at = now()
         WHERE s.sent_version <= excluded.sent_version AND s.synced_version < excluded.sent_version
        RETURNING s.entity_type, s.entity_id
    )
    SELECT k.entity_type, k.entity_id, h.entity_id IS NOT NULL AS held, w.entity_id IS NOT NULL AS written
      FROM k
      LEFT JOIN held h ON h.entity_type = k.entity_type AND h.entity_id = k.entity_id
      LEFT JOIN written w ON w.entity_type = k.entity_type AND w.entity_id = k.entity_id
    """
)

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


def storable_text(value: str) -> str:
    """Text PostgreSQL can hold: no NUL characters, no lone surrogates."""
    return value.replace("\x00", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")


def target_ref_problem(ref: str) -> str | None:
    """Why target_sync_state.target_ref cannot hold the target's id, or None."""
    if len(ref) > TARGET_REF_MAX:
        return f"the target's id for the record has {len(ref)} characters; target_sync_state.target_ref holds at most {TARGET_REF_MAX}"
    if storable_text(ref) != ref:
        return f"the target's id for the record holds characters the database cannot store: {storable_text(ref)[:200]!r}"
    return None


@dataclass(frozen=True)
class Synced:
    key: EntityKey
    version: int
    target_ref: str | None


@dataclass(frozen=True)
class DeliveryFailed:
    key: EntityKey
    version: int
    status: str  # "retry" | "failed"
    attempts: int
    next_retry_time: datetime | None
    error: str


class SyncStateStore:
    """Reads and batched writes of one target's rows. Blocking: call off the event loop."""

    def __init__(self, engine: Engine, target: str, schema: str = "public"):
        self.engine = engine
        self.target = target
        self.schema = schema  # settings.database_schema: part of every lock key
        self._lock_conn: Connection | None = None

    def _lock_key(self, key: EntityKey) -> str:
        return f"sync-out|{self.schema}|{self.target}|{key[0]}|{key[1]}"

    def lock(self, keys: list[EntityKey]) -> set[EntityKey]:
        """Try to lock the entities; returns those locked (others are busy in another worker)."""
        if not keys:
            return set()
        if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.invalidated:
            self._lock_conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        by_lock = {self._lock_key(k): k for k in keys}
        try:
            rows = self._lock_conn.execute(_LOCK, {"keys": list(by_lock)}).all()
        except Exception:
            self._drop_lock_connection()  # a lost session holds no locks; the next call reconnects
            raise
        return {by_lock[k] for k, ok in rows if ok}

    def unlock(self, keys: Iterable[EntityKey]) -> None:
        lock_keys = [self._lock_key(k) for k in keys]
        if lock_keys and self._lock_conn is not None:
            try:
                self._lock_conn.execute(_UNLOCK, {"keys": lock_keys})
            except Exception:
                self._drop_lock_connection()  # closing the session releases its locks
                raise

    def lock_backend_pid(self) -> int | None:
        """PostgreSQL pid of the session holding the locks (for operators and tests)."""
        if self._lock_conn is None or self._lock_conn.closed:
            return None
        return self._lock_conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()

    def _drop_lock_connection(self) -> None:
        if self._lock_conn is not None:
            try:
                self._lock_conn.invalidate()
                self._lock_conn.close()
            except Exception:  # already gone
                pass
            self._lock_conn = None

    def close(self) -> None:
        if self._lock_conn is not None:
            self._lock_conn.close()
            self._lock_conn = None

    def versions(self, keys: Iterable[EntityKey]) -> tuple[dict[EntityKey, int], dict[EntityKey, int]]:
        """The version each entity has at the target, and the highest version ever sent to it
        (absent = never delivered / never sent)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}, {}
        params = {"target": self.target, "types": [k[0] for k in wanted], "ids": [k[1] for k in wanted]}
        with self.engine.connect() as conn:
            rows = conn.execute(_VERSIONS, params).all()
        return {(et, eid): synced for et, eid, synced, _ in rows}, {(et, eid): sent for et, eid, _, sent in rows}

    def record_sending(self, versions: dict[EntityKey, int]) -> set[EntityKey]:
        """Compare-and-set of sent_version without locks (tools, another process): returns
        the entities whose version was recorded; the others have a newer one already."""
        if not versions:
            return set()
        with self.engine.begin() as conn:
            rows = conn.execute(_SENDING, self._sending_params(versions, check_locks=False)).all()
        return {(et, eid) for et, eid, _, written in rows if written}

    def claim(self, versions: dict[EntityKey, int]) -> set[EntityKey]:
        """Before the call, on the lock session: record these versions as sent unless a newer
        one was sent or delivered meanwhile (committed first, so no older version of these
        entities is sent after them, whatever happens next). Returns the entities to send;
        the others are stale. Raises LocksLostError when the session lost any of the locks."""
        if not versions:
            return set()
        conn = self._lock_conn
        if conn is None or conn.closed or conn.invalidated:
            raise LocksLostError("the lock session was lost before the versions to send were recorded")
        try:
            rows = conn.execute(_SENDING, self._sending_params(versions, check_locks=True)).all()
        except Exception:
            self._drop_lock_connection()  # a lost session holds no locks; the next lock() reconnects
            raise
        lost = [(et, eid) for et, eid, held, _ in rows if not held]
        if lost:
            self._drop_lock_connection()
            raise LocksLostError(f"the lock session no longer holds the locks of {len(lost)} entities, e.g. {lost[0][0]}:{lost[0][1]}")
        return {(et, eid) for et, eid, _, written in rows if written}

    def _sending_params(self, versions: dict[EntityKey, int], *, check_locks: bool) -> dict[str, object]:
        keys = sorted(versions)
        return {"target": self.target, "types": [k[0] for k in keys], "ids": [k[1] for k in keys],
                "versions": [versions[k] for k in keys], "lock_keys": [self._lock_key(k) for k in keys],
                "check_locks": check_locks}

    def record(self, synced: list[Synced], failed: list[DeliveryFailed]) -> None:
        """Write the outcomes of one batch in one transaction. A version never moves back: an
        older success or failure does not overwrite what a newer version recorded."""
        with self.engine.begin() as conn:
            if synced:
                best: dict[EntityKey, Synced] = {}
                for s in synced:  # one row per entity: the highest version wins
                    if s.key not in best or best[s.key].version < s.version:
                        best[s.key] = s
                rows = [best[k] for k in sorted(best)]
                conn.execute(_SYNCED, {
                    "target": self.target,
                    "types": [r.key[0] for r in rows], "ids": [r.key[1] for r in rows],
                    "versions": [r.version for r in rows], "refs": [r.target_ref for r in rows],
                })
            if failed:
                conn.execute(
                    _FAILURE,
                    [
                        {
                            "entity_type": f.key[0], "entity_id": f.key[1], "target": self.target,
                            "status": f.status, "attempts": f.attempts, "next_retry_time": f.next_retry_time,
                            "last_error": storable_text(f.error[:2000]), "version": f.version,
                        }
                        for f in sorted(failed, key=lambda f: f.key)
                    ],
                )
