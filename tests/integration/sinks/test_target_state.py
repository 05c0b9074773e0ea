"""target_sync_state's batched calls on the real PostgreSQL: the locks and the state under them
in one round trip, and a batch's outcomes written with its locks released in one round trip,
a version never moving back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from syncflow.sinks.common_db.target_state import DeliveryFailed, Synced, SyncStateStore
from syncflow.settings import Settings

pytestmark = pytest.mark.integration

A, B, C, D = (("location", f"loc-{c}") for c in "abcd")



@pytest.fixture
def stores(engine: Engine, settings: Settings) -> Iterator[tuple[SyncStateStore, SyncStateStore]]:
    """Two workers of one target and schema."""
    pair = (SyncStateStore(engine, "one", settings.database_schema), SyncStateStore(engine, "one", settings.database_schema))
    yield pair
    for s in pair:
        s.close()


def rows(engine: Engine) -> dict[str, tuple[object, ...]]:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT entity_id, synced_version, sent_version, status, attempts, last_error "
                                  "FROM target_sync_state WHERE target = 'one'")).all()
    return {r[0]: tuple(r[1:]) for r in found}


def test_lock_and_read_locks_what_is_free_and_reads_under_the_locks(stores, engine) -> None:
    first, second = stores
    first.record([Synced(A, 2, "ONE-a")], [])
    assert first.lock([B]) == {B}  # busy in the first worker
    got = second.lock_and_read([A, B], also_read=[C])
    assert got.locked == {A}
    assert got.synced == {A: 2} and got.sent == {A: 0}  # B and C: no row
    assert first.lock_and_read([A]).locked == set()  # now the second worker's


def test_record_and_unlock_writes_the_outcomes_then_frees_the_locks(stores, engine) -> None:
    first, second = stores
    first.record([Synced(D, 5, "ONE-d")], [])
    locked = first.lock_and_read([A, B, C, D]).locked
    assert locked == {A, B, C, D}
    due = datetime(2030, 1, 1, tzinfo=UTC)
    first.record_and_unlock(
        [Synced(A, 1, "ONE-a"), Synced(A, 3, "ONE-a3"), Synced(A, 2, None)],  # the highest success counts
        [DeliveryFailed(B, 1, "retry", 1, due, "503 from ONE"), DeliveryFailed(C, 2, "failed", 4, None, "422\x00x"),
         DeliveryFailed(D, 4, "failed", 1, None, "older than what the target holds")],
        locked,
    )
    assert rows(engine) == {
        "loc-a": (3, 0, "synced", 0, None),
        "loc-b": (0, 0, "retry", 1, "503 from ONE"),
        "loc-c": (0, 0, "failed", 4, "422\\0x"),
        "loc-d": (5, 0, "synced", 0, None),  # a failure of an older version does not overwrite it
    }
    assert second.lock_and_read([A, B, C, D]).locked == {A, B, C, D}  # released with the write
    second.record_and_unlock([], [DeliveryFailed(B, 2, "failed", 2, None, "422")], {A, B, C, D})
    assert rows(engine)["loc-b"] == (0, 0, "failed", 2, "422")  # an existing row updated
    assert first.lock_and_read([B]).locked == {B}


def test_outcomes_are_kept_when_the_session_was_lost(stores, engine) -> None:
    """A lost lock session holds no locks: the outcomes still land, on a new session."""
    first, _ = stores
    assert first.lock_and_read([A]).locked == {A}
    pid = first.lock_backend_pid()
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        conn.commit()
    with pytest.raises(Exception):  # noqa: B017 - the driver's error for the dead session
        first.record_and_unlock([Synced(A, 1, "ONE-a")], [], {A})
    first.record_and_unlock([Synced(A, 1, "ONE-a")], [], {A})
    assert rows(engine)["loc-a"][:1] == (1,)
