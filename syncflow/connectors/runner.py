"""One source connector's pass: incremental passes over the source's streams, each page
produced to raw.<source> and acknowledged by the broker before its cursor is saved (in the
common database, shared by every replica: syncflow/connectors/cursor.py). A source error
on one stream is logged and counted, and the pass goes on with the others.
Records re-read in the overlap window that were already published unchanged are not sent
again (see cursor.py), so an idle connector publishes nothing. The connector is wired and
run by syncflow/roles/connector.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from sqlalchemy.exc import SQLAlchemyError

from syncflow.connectors.base import Page, SourceClient, unpublished, within_window
from syncflow.connectors.cursor import CursorStore
from syncflow.connectors.observe import Observer
from syncflow.connectors.publish import RawPublisher, new_batch_number
from syncflow.errors import RetryLaterError, SourceError

log = logging.getLogger(__name__)


@dataclass
class ConnectorStats:
    source: str
    passes: int = 0
    pages: int = 0
    records_published: int = 0
    records_unchanged: int = 0  # re-read in the overlap window, already published as they are
    records_rejected: int = 0  # sent to sync-in.dlq: they fit no schema
    errors: int = 0  # source or broker errors; the affected stream resumes next pass
    error_messages: list[str] = field(default_factory=list)
    stopped_early: bool = False

    def error(self, message: str) -> None:
        self.errors += 1
        self.error_messages.append(message)
        del self.error_messages[:-50]


async def run_pass(client: SourceClient, publisher: RawPublisher, cursors: CursorStore, stats: ConnectorStats,
                   *, max_pages: int | None = None, observer: Observer | None = None,
                   streams_in_flight: int = 1) -> None:
    """One incremental pass over every stream of the source. Up to `streams_in_flight`
    streams are read at once: a source whose API is per property (Yardi, RealPage) has
    hundreds of small streams, each waiting on the source, the broker and the database, and
    read one after the other a pass lasts as long as all those waits together, which is what
    a change waits to be read. Within a stream, the next page is fetched while the broker
    acknowledges the previous one and its cursor is written, and pages are published and
    their cursors saved in the order they were read. A page not acknowledged or a cursor not
    saved stops the whole pass; the next one starts again from the saved cursors."""
    observer = observer or Observer()
    try:
        await asyncio.to_thread(cursors.reload)  # another replica may have moved them
    except SQLAlchemyError as exc:
        log.error("%s: cannot read cursors: %s; pass skipped", client.source, exc)
        stats.error(f"cursors: {exc}")
        return
    try:
        streams = await client.streams()
    except SourceError as exc:
        log.error("%s: cannot list streams: %s", client.source, exc)
        stats.error(str(exc))
        return
    walk = PassWalk(client, publisher, cursors, stats, observer, new_batch_number(), max_pages)
    todo = iter(streams)  # shared: each walker takes the next stream nobody has taken
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(streams_in_flight, len(streams)))):
                group.create_task(walk.walk(todo))
    except ExceptionGroup as failed:  # the others were cancelled: raise what went wrong as it is
        raise failed.exceptions[0] from None
    stats.stopped_early = walk.limit_reached and not walk.failed


@dataclass
class PassWalk:
    """What the streams read at once in one pass share: the pass stops for all of them when
    one page fails, and `max_pages` counts the pages of all of them."""

    client: SourceClient
    publisher: RawPublisher
    cursors: CursorStore
    stats: ConnectorStats
    observer: Observer
    batch_number: int
    max_pages: int | None
    pages_started: int = 0
    limit_reached: bool = False
    failed: bool = False

    @property
    def stopped(self) -> bool:
        return self.limit_reached or self.failed

    async def walk(self, streams: Iterator[str]) -> None:
        """Stream after stream from `streams` until none is left or the pass stops."""
        in_flight: asyncio.Task[bool] | None = None  # the previous page: published and its cursor saved
        try:
            for stream in streams:
                if self.stopped:
                    break
                try:
                    async for page in self.client.pages(stream, self.cursors.get(stream)):
                        self.observer.heartbeat()
                        if in_flight is not None and not await in_flight:
                            self.failed = True
                        in_flight = None
                        if self.stopped:
                            break
                        in_flight = asyncio.create_task(deliver_page(
                            self.client, self.publisher, self.cursors, self.stats, self.observer, page,
                            self.batch_number))
                        self.pages_started += 1
                        if self.max_pages is not None and self.pages_started >= self.max_pages:
                            self.limit_reached = True  # this page is the pass's last
                            break
                except SourceError as exc:
                    log.error("%s %s: %s (%s); other streams go on", self.client.source, stream, exc, exc.category)
                    self.stats.error(f"{stream}: {exc}")
            if in_flight is not None and not await in_flight:
                self.failed = True
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()


async def deliver_page(client: SourceClient, publisher: RawPublisher, cursors: CursorStore, stats: ConnectorStats,
                       observer: Observer, page: Page, batch_number: int) -> bool:
    """Publish one page, wait for the broker's acknowledgement, then save its cursor and what
    was sent inside the re-read window. False (logged and counted) when the pass must stop:
    the broker or the schema registry did not take the records, or the cursor could not be
    saved; the next pass starts again from the last saved cursor."""
    stream = page.stream
    try:
        published = cursors.published(stream)
        records, marks = unpublished(client.source, page.entity_type, page.records, published)
        result = await asyncio.to_thread(publisher.publish, page.entity_type, records, batch_number, page.rejects)
        # acknowledged: now the cursor and what was sent inside the re-read window
        cursor = page.cursor if page.cursor is not None else cursors.get(stream)
        window = client.replay_from_ms(cursor) if cursor is not None else None
        await asyncio.to_thread(cursors.set, stream, page.cursor,
                                None if window is None else within_window(published, marks, window))
    except (RetryLaterError, KafkaException) as exc:  # not acknowledged, registry outage
        log.error("%s: cannot produce: %s; pass stopped, cursor kept", client.source, exc)
        stats.error(f"{stream}: {exc}")
        return False
    except SQLAlchemyError as exc:
        # published but not recorded: the next pass publishes the page again (sync-in
        # drops the duplicates by content hash)
        log.error("%s: cannot save the cursor: %s; pass stopped", client.source, exc)
        stats.error(f"{stream}: {exc}")
        return False
    stats.pages += 1
    stats.records_unchanged += len(page.records) - len(records)
    stats.records_published += len(result.keys)
    stats.records_rejected += result.rejected
    observer.published(f"connector.{client.source}", publisher.topic, len(result.keys))
    for category, n in result.rejected_by_category.items():
        observer.dead_lettered(publisher.dlq_topic, category, n)
    return True
