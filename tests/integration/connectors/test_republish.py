"""Passes over an unchanged source publish nothing: what was already published in the
overlap window is remembered next to the cursor and not sent again, while every change
(even within the same second) still goes out, and nothing is remembered before the broker
acknowledged it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncflow.connectors.base import Page, latest_modified_ms, unpublished
from syncflow.connectors.cursor import CursorStore
from syncflow.connectors.insight import InsightClient
from syncflow.connectors.lessen360 import Lessen360Client
from syncflow.connectors.publish import PublishResult
from syncflow.connectors.realpage import RealPageClient
from syncflow.connectors.runner import ConnectorStats, run_pass
from syncflow.connectors.yardi import YardiClient
from syncflow.streams.producer import DeliveryError
from syncflow.streams.settings import SourceSettings

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
            raise DeliveryError([(None, None)])  # type: ignore[list-item]
        self.sent += records
        return PublishResult(keys=[f"{entity_type}:{r.get('ServiceRequestId') or r.get('ticket_id')}" for r in records])


async def one_pass(client: Any, publisher: FakePublisher, cursor_dir: Path) -> list[str]:
    """A pass as a (re)started connector runs it: cursors read from the file. Returns the
    ids published by this pass."""
    before = len(publisher.sent)
    stats = ConnectorStats(client.source)
    await run_pass(client, publisher, CursorStore(cursor_dir, client.source), stats)  # type: ignore[arg-type]
    sent = publisher.sent[before:]
    assert stats.records_published == len(sent)
    return sorted(r.get("ServiceRequestId") or r.get("ticket_id") for r in sent)


def boundary_records() -> list[dict[str, Any]]:
    """30 records, the last 27 within the overlap window of the newest one."""
    return [request(i, T0 + (0 if i < 3 else 10_000 + (i % 3) * 1000)) for i in range(30)]


async def test_a_second_pass_without_changes_publishes_nothing(tmp_path: Path) -> None:
    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    assert len(await one_pass(client, publisher, tmp_path)) == 30
    for _ in range(3):
        assert await one_pass(client, publisher, tmp_path) == []

    saved = json.loads((tmp_path / "yardi.json").read_text())
    assert saved["cursors"] == {STREAM: str(T0 + 12_000)}
    # only the records the next pass re-reads are remembered, not the whole stream
    assert len(saved["published"][STREAM]) == 27


async def test_changes_inside_the_overlap_window_are_published(tmp_path: Path) -> None:
    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    await one_pass(client, publisher, tmp_path)

    client.put(request(5, T0 + 12_000, status="Closed"))  # changed again within the same second
    client.put(request(6, T0 + 12_500))  # a newer modified time inside the window (same second)
    client.put(request(1, T0 + 11_000))  # an old record moved into the window
    client.put(request(40, T0 + 12_000))  # a new record at the cursor time
    assert await one_pass(client, publisher, tmp_path) == ["SR-1", "SR-40", "SR-5", "SR-6"]
    assert await one_pass(client, publisher, tmp_path) == []

    client.put(request(5, T0 + 12_000, status="Open"))  # back to the first content: a change too
    assert await one_pass(client, publisher, tmp_path) == ["SR-5"]
    assert publisher.sent[-1] == request(5, T0 + 12_000, status="Open")


async def test_an_old_cursor_file_without_published_records_loads(tmp_path: Path) -> None:
    (tmp_path / "yardi.json").write_text(json.dumps({"cursors": {STREAM: str(T0 + 12_000)}}, indent=1))
    store = CursorStore(tmp_path, "yardi")
    assert store.all() == {STREAM: str(T0 + 12_000)} and store.published(STREAM) == {}

    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    assert len(await one_pass(client, publisher, tmp_path)) == 27  # the window, once, as before
    assert await one_pass(client, publisher, tmp_path) == []


async def test_nothing_is_remembered_before_the_broker_acknowledged(tmp_path: Path) -> None:
    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    publisher.down = True
    await one_pass(client, publisher, tmp_path)
    assert not (tmp_path / "yardi.json").exists()

    publisher.down = False
    assert len(await one_pass(client, publisher, tmp_path)) == 30
    client.put(request(7, T0 + 12_000, status="Closed"))
    publisher.down = True
    await one_pass(client, publisher, tmp_path)
    publisher.down = False
    assert await one_pass(client, publisher, tmp_path) == ["SR-7"]


async def test_remembered_records_are_pruned_as_the_cursor_moves(tmp_path: Path) -> None:
    client, publisher = FakeYardi(boundary_records()), FakePublisher()
    await one_pass(client, publisher, tmp_path)
    client.put(request(2, T0 + 60_000))
    assert await one_pass(client, publisher, tmp_path) == ["SR-2"]
    assert CursorStore(tmp_path, "yardi").published(STREAM).keys() == {"service_request:SR-2"}


def test_unpublished_keeps_order_and_sends_a_key_again_only_when_it_differs() -> None:
    a, b = request(1, T0), request(1, T0, status="Closed")
    records, marks = unpublished("yardi", "service_request", [a, a, b, request(2, T0)], {})
    assert records == [a, b, request(2, T0)]
    assert marks.keys() == {"service_request:SR-1", "service_request:SR-2"}
    again, _ = unpublished("yardi", "service_request", [b, a, {"no": "id"}], marks)
    assert again == [a, {"no": "id"}]  # unreadable id or time: always sent


def test_cursor_file_round_trip_and_no_rewrite_when_unchanged(tmp_path: Path) -> None:
    store = CursorStore(tmp_path, "lessen360")
    store.set("work", json.dumps([T0, "W1"]), {"service_request:W1": (T0, "abc")})
    mtime = (tmp_path / "lessen360.json").stat().st_mtime_ns
    store.set("work", json.dumps([T0, "W1"]), {"service_request:W1": (T0, "abc")})
    assert (tmp_path / "lessen360.json").stat().st_mtime_ns == mtime
    again = CursorStore(tmp_path, "lessen360")
    assert again.all() == {"work": json.dumps([T0, "W1"])}
    assert again.published("work") == {"service_request:W1": (T0, "abc")}
    again.set("work", None, {})
    assert "published" not in json.loads((tmp_path / "lessen360.json").read_text())


@pytest.mark.parametrize(("client_class", "cursor", "expected"), [
    (YardiClient, str(T0 + 12_345), T0 + 10_000),
    (RealPageClient, str(T0 + 12_345), T0 + 10_000),
    (Lessen360Client, json.dumps([T0 + 12_345, "W1"]), T0 + 10_345),
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


async def test_a_feed_without_overlap_keeps_only_its_token(tmp_path: Path) -> None:
    publisher, feed = FakePublisher(), FakeFeed()
    assert len(await one_pass(feed, publisher, tmp_path)) == 5
    assert await one_pass(feed, publisher, tmp_path) == []
    assert json.loads((tmp_path / "insight.json").read_text()) == {"cursors": {"service_request": "5"}}
