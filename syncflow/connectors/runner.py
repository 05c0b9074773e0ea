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

from syncflow.connectors.base import SourceClient, unpublished, within_window
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
    """One incremental pass over every stream of the source."""
    observer = observer or Observer()
    group = f"connector.{client.source}"
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
    for stream in streams:
        try:
            async for page in client.pages(stream, cursors.get(stream)):
                observer.heartbeat()
                published = cursors.published(stream)
                records, marks = unpublished(client.source, page.entity_type, page.records, published)
                result = await asyncio.to_thread(publisher.publish, page.entity_type, records, batch_number,
                                                 page.rejects)
                # acknowledged: now the cursor and what was sent inside the re-read window
                cursor = page.cursor if page.cursor is not None else cursors.get(stream)
                window = client.replay_from_ms(cursor) if cursor is not None else None
                await asyncio.to_thread(cursors.set, stream, page.cursor,
                                        None if window is None else within_window(published, marks, window))
                stats.pages += 1
                stats.records_unchanged += len(page.records) - len(records)
                stats.records_published += len(result.keys)
                stats.records_rejected += result.rejected
                observer.published(group, publisher.topic, len(result.keys))
                for category, n in result.rejected_by_category.items():
                    observer.dead_lettered(publisher.dlq_topic, category, n)
                if max_pages is not None and stats.pages >= max_pages:
                    stats.stopped_early = True
                    return
        except SourceError as exc:
            log.error("%s %s: %s (%s); other streams go on", client.source, stream, exc, exc.category)
            stats.error(f"{stream}: {exc}")
        except (RetryLaterError, KafkaException) as exc:  # not acknowledged, registry outage
            log.error("%s: cannot produce: %s; pass stopped, cursor kept", client.source, exc)
            stats.error(f"{stream}: {exc}")
            return
        except SQLAlchemyError as exc:
            # published but not recorded: the next pass publishes the page again (sync-in
            # drops the duplicates by content hash)
            log.error("%s: cannot save the cursor: %s; pass stopped", client.source, exc)
            stats.error(f"{stream}: {exc}")
            return
