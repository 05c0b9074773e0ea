"""Passes over an unchanged source publish nothing: what was already published in the
overlap window is remembered next to the cursor and not sent again, while every change
(even within the same second) still goes out, and nothing is remembered before the broker
acknowledged it. Cursors and fingerprints live in the test's own schema of the common
database; a new CursorStore per pass is a restarted connector."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text

from syncflow.connectors.base import Page, latest_modified_ms, unpublished
from syncflow.connectors.cursor import CursorStore
from syncflow.connectors.insight import InsightClient
from syncflow.connectors.lessen360 import Lessen360SourceClient
from syncflow.connectors.publish import PublishResult
from syncflow.connectors.realpage import RealPageClient
from syncflow.connectors.runner import ConnectorStats, run_pass
from syncflow.connectors.yardi import YardiClient
from syncflow.sinks.common_db.cursors import save_cursor
from syncflow.errors import NotAcknowledgedError
from syncflow.settings import Settings, SourceSettings

pytestmark = pytest.mark.integration

T0 = int(datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp() * 1000)
STREAM = "p1/service_request"


def at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def request(n: int, ms: int, status: str = "Open") -> dict[str, Any]:
    return {"ServiceRequestId": f"SR-{n}", "UpdateDate": at(ms), "CurrentStatus": status}


class FakeYardi:
    """Serves one property's service requests the way Voyager does: everything modified
    since FromDate (inclusive, to the second), all in one answer."""

    source = "yardi"

    def __init__(self, records: list[dict[str, Any]], overlap_s: float = 2.0):
        self.records = {r["ServiceRequestId"]: r for r in records}
        self.overlap_ms = int(overlap_s * 1000)

    def put(self, record: dict[str, Any]) -> None:
        self.records[record["ServiceRequestId"]] = record

    async def streams(self) -> list[str]:
        return [STREAM]

    def replay_from_ms(self, cursor: str) -> int | None:
        ms = int(cursor) - self.overlap_ms
        return ms - ms % 1000

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        since = self.replay_from_ms(cursor) if cursor else None
        records = [r for r in self.records.values()
                   if since is None or latest_modified_ms("yardi", [r], None) >= since]  # type: ignore[operator]
        newest = latest_modified_ms("yardi", records, int(cursor) if cursor else None)
        yield Page(stream, "service_request", records, None if newest is None else str(newest))


class FakePublisher:
    topic, dlq_topic = "raw.yardi", "sync-in.dlq"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.down = False

    def publish(self, entity_type: str, records: list[dict[str, Any]], batch_number: int,
                rejects: Any = None) -> PublishResult:
        if self.down:
            raise NotAcknowledgedError([(None, None)])  # type: ignore[list-item]
        self.sent += records
        return PublishResult(keys=[f"{entity_type}:{r.get('ServiceRequestId') or r.get('ticket_id')}" for r in records])



def rows(engine: Engine, source: str) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """stream -> (cursor, published) as stored."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT stream, cursor, published FROM connector_cursors WHERE source_system = :s"),
                             {"s": source}).all()
    return {r.stream: (r.cursor, r.published) for r in found}


async def one_pass(client: Any, publisher: FakePublisher, engine: Engine) -> list[str]:
    """A pass as a (re)started connector runs it: cursors read from the database. Returns
    the ids published by this pass."""
    before = len(publisher.sent)
    stats = ConnectorStats(client.source)
    await run_pass(client, publisher, CursorStore(engine, client.source), stats)  # type: ignore[arg-type]
    sent = publisher.sent[before:]
    assert stats.records_published == len(sent)
    return sorted(r.get("ServiceRequestId") or r.get("ticket_id") for r in sent)


def boundary_records() -> list[dict[str, Any]]:
    """30 records, the last 27 within the overlap window of the newest one."""
    return [request(i, T0 + (0 if i < 3 else 10_000 + (i % 3) * 1000)) for i in range(30)]


async def test_a_second_pass_without_changes_publishes_nothing(engine: Engine) -> None:
    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    assert len(await one_pass(client, publisher, engine)) == 30
    for _ in range(3):
        assert await one_pass(client, publisher, engine) == []

    cursor, published = rows(engine, "yardi")[STREAM]
    assert cursor == str(T0 + 12_000)
    # only the records the next pass re-reads are remembered, not the whole stream
    assert len(published) == 27


async def test_changes_inside_the_overlap_window_are_published(engine: Engine) -> None:
    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    await one_pass(client, publisher, engine)

    client.put(request(5, T0 + 12_000, status="Closed"))  # changed again within the same second
    client.put(request(6, T0 + 12_500))  # a newer modified time inside the window (same second)
    client.put(request(1, T0 + 11_000))  # an old record moved into the window
    client.put(request(40, T0 + 12_000))  # a new record at the cursor time
    assert await one_pass(client, publisher, engine) == ["SR-1", "SR-40", "SR-5", "SR-6"]
    assert await one_pass(client, publisher, engine) == []

    client.put(request(5, T0 + 12_000, status="Open"))  # back to the first content: a change too
    assert await one_pass(client, publisher, engine) == ["SR-5"]
    assert publisher.sent[-1] == request(5, T0 + 12_000, status="Open")


async def test_a_cursor_without_published_records_loads(engine: Engine) -> None:
    save_cursor(engine, "yardi", STREAM, str(T0 + 12_000), {})
    store = CursorStore(engine, "yardi")
    assert store.all() == {STREAM: str(T0 + 12_000)} and store.published(STREAM) == {}

    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    assert len(await one_pass(client, publisher, engine)) == 27  # the window, once, as before
    assert await one_pass(client, publisher, engine) == []


async def test_nothing_is_remembered_before_the_broker_acknowledged(engine: Engine) -> None:
    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    publisher.down = True
    await one_pass(client, publisher, engine)
    assert rows(engine, "yardi") == {}

    publisher.down = False
    assert len(await one_pass(client, publisher, engine)) == 30
    client.put(request(7, T0 + 12_000, status="Closed"))
    publisher.down = True
    await one_pass(client, publisher, engine)
    publisher.down = False
    assert await one_pass(client, publisher, engine) == ["SR-7"]


async def test_remembered_records_are_pruned_as_the_cursor_moves(engine: Engine) -> None:
    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    await one_pass(client, publisher, engine)
    client.put(request(2, T0 + 60_000))
    assert await one_pass(client, publisher, engine) == ["SR-2"]
    assert CursorStore(engine, "yardi").published(STREAM).keys() == {"service_request:SR-2"}


def test_unpublished_keeps_order_and_sends_a_key_again_only_when_it_differs() -> None:
    a, b = request(1, T0), request(1, T0, status="Closed")
    records, marks = unpublished("yardi", "service_request", [a, a, b, request(2, T0)], {})
    assert records == [a, b, request(2, T0)]
    assert marks.keys() == {"service_request:SR-1", "service_request:SR-2"}
    again, _ = unpublished("yardi", "service_request", [b, a, {"no": "id"}], marks)
    assert again == [a, {"no": "id"}]  # unreadable id or time: always sent


def updated_at(engine: Engine, source: str, stream: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT updated_at FROM connector_cursors WHERE source_system = :s AND stream = :t"),
                            {"s": source, "t": stream}).scalar_one()


def test_cursor_round_trip_per_source_and_no_rewrite_when_unchanged(engine: Engine) -> None:
    store = CursorStore(engine, "lessen360")
    assert store.get("work") is None
    store.set("work", json.dumps([T0, "W1"]), {"service_request:W1": (T0, "abc")})
    store.set("other", "7")
    written = updated_at(engine, "lessen360", "work")
    store.set("work", json.dumps([T0, "W1"]), {"service_request:W1": (T0, "abc")})
    assert updated_at(engine, "lessen360", "work") == written
    again = CursorStore(engine, "lessen360")
    assert again.all() == {"work": json.dumps([T0, "W1"]), "other": "7"}
    assert again.published("work") == {"service_request:W1": (T0, "abc")}
    assert CursorStore(engine, "yardi").all() == {}  # one source's rows only
    again.set("work", None, {})
    assert rows(engine, "lessen360")["work"] == (json.dumps([T0, "W1"]), {})
    assert CursorStore(engine, "lessen360").published("work") == {}


@pytest.mark.parametrize(("client_class", "cursor", "expected"), [
    (YardiClient, str(T0 + 12_345), T0 + 10_000),
    (RealPageClient, str(T0 + 12_345), T0 + 10_000),
    (Lessen360SourceClient, json.dumps([T0 + 12_345, "W1"]), T0 + 10_345),
    (InsightClient, "opaque-token", None),
])
def test_each_client_names_the_window_its_next_pass_re_reads(client_class: Any, cursor: str,
                                                             expected: int | None) -> None:
    settings = SourceSettings(base_url="http://127.0.0.1:9", overlap_s=2.0)
    client = client_class(None, settings, None)
    assert client.replay_from_ms(cursor) == expected


class FakeFeed:
    """An Insight-like feed: an opaque token, no overlap, nothing to remember."""

    source = "insight"

    def __init__(self) -> None:
        self.items = [{"ticket_id": f"T{i}", "updated_at": "2026-01-01T12:00:00+00:00"} for i in range(5)]

    async def streams(self) -> list[str]:
        return ["service_request"]

    def replay_from_ms(self, cursor: str) -> int | None:
        return None

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        start = int(cursor or 0)
        yield Page(stream, stream, self.items[start:], str(len(self.items)))


async def test_a_feed_without_overlap_keeps_only_its_token(engine: Engine) -> None:
    publisher, feed = FakePublisher(), FakeFeed()
    assert len(await one_pass(feed, publisher, engine)) == 5
    assert await one_pass(feed, publisher, engine) == []
    assert rows(engine, "insight") == {"service_request": ("5", {})}
