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
                   *, max_pages: int | None = None, observer: Observer | None = None) -> None:
    """One incremental pass over every stream of the source. The next page is fetched while
    the broker acknowledges the previous one and its cursor is written: a pass is mostly
    small pages (one property's records of one type), each waiting on the source, on the
    broker and on the database, and the two waits overlap. Pages are still published and
    their cursors saved one after the other, in the order they were read."""
    observer = observer or Observer()
    batch_number = new_batch_number()
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
    in_flight: asyncio.Task[bool] | None = None  # the previous page: published and its cursor saved
    try:
        for stream in streams:
            try:
                async for page in client.pages(stream, cursors.get(stream)):
                    observer.heartbeat()
                    if in_flight is not None and not await in_flight:
                        return
                    in_flight = asyncio.create_task(
                        deliver_page(client, publisher, cursors, stats, observer, page, batch_number))
                    if max_pages is not None and stats.pages + 1 >= max_pages:  # this page is the last
                        stats.stopped_early = await in_flight
                        return
            except SourceError as exc:
                log.error("%s %s: %s (%s); other streams go on", client.source, stream, exc, exc.category)
                stats.error(f"{stream}: {exc}")
        if in_flight is not None:
            await in_flight
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
