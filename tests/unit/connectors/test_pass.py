"""A connector pass reading several streams at once: how many are read together, the order
of each stream's pages and cursors, and the pass stopping as a whole (no services: the
source, the broker and the cursor table are stand-ins with the same calls)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from confluent_kafka import KafkaException

from syncflow.connectors.base import Page
from syncflow.connectors.publish import PublishResult
from syncflow.connectors.runner import ConnectorStats, run_pass


class Source:
    """`streams` streams of `pages` pages each; counts the streams being read at once."""

    source = "yardi"

    def __init__(self, streams: int, pages: int = 1, fetch_s: float = 0.01):
        self.names = [f"p{i:03d}/location" for i in range(streams)]
        self.page_count, self.fetch_s = pages, fetch_s
        self.reading = 0
        self.most_at_once = 0
        self.started: list[str] = []

    async def streams(self) -> list[str]:
        return list(self.names)

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        self.started.append(stream)
        self.reading += 1
        self.most_at_once = max(self.most_at_once, self.reading)
        try:
            for n in range(self.page_count):
                await asyncio.sleep(self.fetch_s)
                yield Page(stream, "location", [{"page": n}], f"{stream}#{n}")
        finally:
            self.reading -= 1

    def replay_from_ms(self, cursor: str) -> int | None:
        return None


class Broker:
    """The publisher: takes every page, except that it refuses the pages of `refuse`."""

    topic, dlq_topic = "raw.yardi", "sync-in.dlq"

    def __init__(self, refuse: str | None = None):
        self.refuse = refuse
        self.pages: list[dict[str, Any]] = []

    def publish(self, entity_type: str, records: list[dict[str, Any]], batch_number: int, rejects: list) -> PublishResult:
        if self.refuse is not None and records and self.refuse in str(records[0].get("stream")):
            raise KafkaException("not acknowledged")
        self.pages.extend(records)
        return PublishResult(keys=[f"k{len(self.pages)}"])


class Cursors:
    def __init__(self) -> None:
        self.saved: list[tuple[str, str | None]] = []

    def reload(self) -> None:
        pass

    def get(self, stream: str) -> str | None:
        return None

    def published(self, stream: str) -> dict:
        return {}

    def set(self, stream: str, cursor: str | None, published: Any = None) -> None:
        self.saved.append((stream, cursor))


def run(source: Source, broker: Broker, cursors: Cursors, **kwargs: Any) -> ConnectorStats:
    stats = ConnectorStats(source.source)
    asyncio.run(run_pass(source, broker, cursors, stats, **kwargs))  # type: ignore[arg-type]
    return stats


@pytest.mark.parametrize("in_flight", [1, 4])
def test_streams_are_read_as_many_at_once_as_set_and_every_one_is_saved(in_flight: int) -> None:
    source, broker, cursors = Source(streams=20, pages=3), Broker(), Cursors()
    stats = run(source, broker, cursors, streams_in_flight=in_flight)
    assert source.most_at_once == in_flight
    assert stats.pages == 60 and stats.errors == 0 and not stats.stopped_early
    for stream in source.names:  # each stream's cursors in the order its pages were read
        assert [c for s, c in cursors.saved if s == stream] == [f"{stream}#{n}" for n in range(3)]


def test_more_streams_in_flight_than_streams_reads_each_once() -> None:
    source, broker, cursors = Source(streams=3), Broker(), Cursors()
    run(source, broker, cursors, streams_in_flight=16)
    assert sorted(source.started) == source.names and len(cursors.saved) == 3


def test_a_page_not_acknowledged_stops_the_whole_pass_and_saves_no_cursor_past_it() -> None:
    class Refusing(Source):
        async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
            async for page in super().pages(stream, cursor):
                yield Page(page.stream, page.entity_type, [{"stream": stream}], page.cursor)

    source, cursors = Refusing(streams=40, pages=2, fetch_s=0.02), Cursors()
    broken = source.names[5]
    stats = run(source, Broker(refuse=broken), cursors, streams_in_flight=4)
    assert stats.errors == 1 and broken not in {s for s, _ in cursors.saved}
    assert len(source.started) < 40  # streams after the failure were never read
    assert not stats.stopped_early


def test_max_pages_counts_the_pages_of_every_stream_read_at_once() -> None:
    source, broker, cursors = Source(streams=20, pages=5), Broker(), Cursors()
    stats = run(source, broker, cursors, streams_in_flight=4, max_pages=2)
    assert stats.stopped_early and stats.pages == 2 and len(cursors.saved) == 2 and len(broker.pages) == 2
