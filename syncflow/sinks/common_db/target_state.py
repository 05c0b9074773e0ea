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

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from typing import ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, TextClause, text

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

# Locks, then the state under them, in one round trip: two statements of one query, so the
# read (the second) takes its snapshot after the locks are held (a single statement's snapshot
# predates its own lock calls, and could miss an outcome committed by the worker that just
# released one). Which locks this session holds is read back from pg_locks, as in _SENDING.
_LOCK_AND_READ = text(
    """
    SELECT pg_try_advisory_lock(hashtextextended(k, 0)) FROM unnest(CAST(:lock_keys AS text[])) AS k;
    WITH mine AS (
        SELECT (l.classid::bigint << 32) | l.objid::bigint AS lock_id FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.objsubid = 1
    )
    SELECT k.entity_type, k.entity_id, hashtextextended(k.lock_key, 0) IN (SELECT lock_id FROM mine) AS held,
           t.synced_version, t.sent_version
      FROM unnest(CAST(:types AS text[]), CAST(:ids AS text[]), CAST(:read_lock_keys AS text[]))
           AS k(entity_type, entity_id, lock_key)
      LEFT JOIN LATERAL (
           SELECT s.synced_version, s.sent_version FROM target_sync_state s
            WHERE s.entity_type = k.entity_type AND s.entity_id = k.entity_id AND s.target = :target
            LIMIT 1) t ON true
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

# Failures of one batch in one statement: rows whose synced version is below the failing one
# are updated, entities without a row get one (a version never moves back).
_FAILURES = text(
    """
    WITH k AS (
        SELECT * FROM unnest(CAST(:f_types AS text[]), CAST(:f_ids AS text[]), CAST(:f_versions AS int[]),
                             CAST(:f_statuses AS text[]), CAST(:f_attempts AS int[]),
                             CAST(:f_next_retry_times AS timestamptz[]), CAST(:f_errors AS text[]))
               AS u(entity_type, entity_id, version, status, attempts, next_retry_time, last_error)
    ), updated AS (
        UPDATE target_sync_state s
           SET status = k.status, attempts = k.attempts, next_retry_time = k.next_retry_time,
               last_error = k.last_error, updated_at = now()
          FROM k
         WHERE s.entity_type = k.entity_type AND s.entity_id = k.entity_id AND s.target = :target
           AND s.synced_version < k.version
    )
    INSERT INTO target_sync_state (entity_type, entity_id, target, synced_version, status, attempts,
                                   next_retry_time, last_error, updated_at)
    SELECT k.entity_type, k.entity_id, :target, 0, k.status, k.attempts, k.next_retry_time, k.last_error, now()
      FROM k
     WHERE NOT EXISTS (SELECT 1 FROM target_sync_state s
                        WHERE s.entity_type = k.entity_type AND s.entity_id = k.entity_id AND s.target = :target)
    ON CONFLICT (entity_type, entity_id, target) DO NOTHING
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
class LockedState:
    """What lock_and_read found: the entities now locked by this session, and the synced and
    sent versions of those read (absent = no row: never sent, never delivered)."""

    locked: set[EntityKey]
    synced: dict[EntityKey, int]
    sent: dict[EntityKey, int]


@dataclass(frozen=True)
class DeliveryFailed:
    key: EntityKey
    version: int
    status: str  # "retry" | "failed"
    attempts: int
    next_retry_time: datetime | None
    error: str


P = ParamSpec("P")
R = TypeVar("R")


def _on_session(method: Callable[P, R]) -> Callable[P, R]:
    """One call at a time on the lock session: a worker's batches in flight share it."""

    @functools.wraps(method)
    def one_at_a_time(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._session:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return one_at_a_time


class SyncStateStore:
    """Reads and batched writes of one target's rows. Blocking: call off the event loop."""

    def __init__(self, engine: Engine, target: str, schema: str = "public"):
        self.engine = engine
        self.target = target
        self.schema = schema  # settings.database_schema: part of every lock key
        self._lock_conn: Connection | None = None
        self._session = threading.RLock()  # held by each call on the lock session (_on_session)
        self._driver_sql: dict[int, str] = {}  # statement → its text for the driver (compiled once)

    def _lock_key(self, key: EntityKey) -> str:
        return f"sync-out|{self.schema}|{self.target}|{key[0]}|{key[1]}"

    @_on_session
    def lock(self, keys: list[EntityKey]) -> set[EntityKey]:
        """Try to lock the entities; returns those locked (others are busy in another worker)."""
        if not keys:
            return set()
        conn = self._lock_session()
        by_lock = {self._lock_key(k): k for k in keys}
        try:
            rows = conn.execute(_LOCK, {"keys": list(by_lock)}).all()
        except Exception:
            self._drop_lock_connection()  # a lost session holds no locks; the next call reconnects
            raise
        return {by_lock[k] for k, ok in rows if ok}

    def _lock_session(self) -> Connection:
        """The connection whose session holds this worker's locks, opened when there is none."""
        if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.invalidated:
            self._lock_conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._lock_conn

    @_on_session
    def unlock(self, keys: Iterable[EntityKey]) -> None:
        lock_keys = [self._lock_key(k) for k in keys]
        if lock_keys and self._lock_conn is not None:
            try:
                self._lock_conn.execute(_UNLOCK, {"keys": lock_keys})
            except Exception:
                self._drop_lock_connection()  # closing the session releases its locks
                raise

    @_on_session
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

    @_on_session
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

    @_on_session
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
        statements, params = self._outcome_statements(synced, failed)
        if statements:
            with self.engine.begin() as conn:
                for statement in statements:
                    conn.execute(statement, params)

    @_on_session
    def lock_and_read(self, keys: list[EntityKey], also_read: Iterable[EntityKey] = ()) -> LockedState:
        """Try to lock `keys` (others are busy in another worker), then read the state of the
        keys and of `also_read` (their references) under the locks, in one round trip."""
        if not keys:
            return LockedState(set(), {}, {})
        keys = list(dict.fromkeys(keys))  # one lock call per entity: a second would need a second unlock
        conn = self._lock_session()
        read = sorted(set(keys) | set(also_read))
        params = {"target": self.target, "lock_keys": [self._lock_key(k) for k in keys],
                  "types": [k[0] for k in read], "ids": [k[1] for k in read],
                  "read_lock_keys": [self._lock_key(k) for k in read]}
        try:
            rows = conn.execute(_LOCK_AND_READ, params).all()
        except Exception:
            self._drop_lock_connection()  # a lost session holds no locks; the next call reconnects
            raise
        wanted = set(keys)
        state = LockedState({(et, eid) for et, eid, held, _, _ in rows if held and (et, eid) in wanted}, {}, {})
        for et, eid, _, synced, sent in rows:
            if synced is not None:
                state.synced[(et, eid)], state.sent[(et, eid)] = synced, sent
        return state

    @_on_session
    def record_and_unlock(self, synced: list[Synced], failed: list[DeliveryFailed], locked: Iterable[EntityKey]) -> None:
        """The outcomes of one batch (as `record`), then the release of its locks, on the lock
        session in one round trip: BEGIN, the writes, COMMIT, then the unlock, so no other
        worker takes an entity's lock before its outcome is committed."""
        statements, params = self._outcome_statements(synced, failed)
        lock_keys = [self._lock_key(k) for k in locked]
        if not statements and not lock_keys:
            return
        had_session = self._lock_conn is not None and not self._lock_conn.closed and not self._lock_conn.invalidated
        conn = self._lock_session()
        sql = [self._for_driver(conn, statement) for statement in statements]
        if sql:
            sql = ["BEGIN", *sql, "COMMIT"]
        if lock_keys and had_session:  # a new session holds none of them
            sql.append(self._for_driver(conn, _UNLOCK))
            params["keys"] = lock_keys
        try:
            conn.exec_driver_sql(";\n".join(sql), params)
        except Exception:
            self._drop_lock_connection()  # closing the session releases its locks
            raise

    def _for_driver(self, conn: Connection, statement: TextClause) -> str:
        """A statement as the driver takes it (several are sent as one query string)."""
        if id(statement) not in self._driver_sql:
            self._driver_sql[id(statement)] = str(statement.compile(dialect=conn.dialect))
        return self._driver_sql[id(statement)]

    def _outcome_statements(self, synced: list[Synced], failed: list[DeliveryFailed]) -> tuple[list[TextClause], dict[str, object]]:
        """The batched writes of a batch's outcomes and their parameters (one row per entity:
        the highest version of its successes, the last of its failures)."""
        statements: list[TextClause] = []
        params: dict[str, object] = {"target": self.target}
        if synced:
            best: dict[EntityKey, Synced] = {}
            for s in synced:
                if s.key not in best or best[s.key].version < s.version:
                    best[s.key] = s
            rows = [best[k] for k in sorted(best)]
            statements.append(_SYNCED)
            params.update({"types": [r.key[0] for r in rows], "ids": [r.key[1] for r in rows],
                           "versions": [r.version for r in rows], "refs": [r.target_ref for r in rows]})
        if failed:
            last = {f.key: f for f in failed}
            fails = [last[k] for k in sorted(last)]
            statements.append(_FAILURES)
            params.update({
                "f_types": [f.key[0] for f in fails], "f_ids": [f.key[1] for f in fails],
                "f_versions": [f.version for f in fails], "f_statuses": [f.status for f in fails],
                "f_attempts": [f.attempts for f in fails], "f_next_retry_times": [f.next_retry_time for f in fails],
                "f_errors": [storable_text(f.error[:2000]) for f in fails],
            })
        return statements, params
