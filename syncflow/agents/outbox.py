"""The outbox relay: committed versions become change events, and are marked published
only after Kafka acknowledged them. A version committed by a worker that died before
publishing is found by the sweeper; locks keep two publishers from sending one version
twice and keep each entity's versions in order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from sqlalchemy import Engine

from syncflow.agents.change_events import change_records
from syncflow.model import EntityKey, NewVersion
from syncflow.sinks.common_db import counts
from syncflow.sinks.common_db.engine import unit_of_work
from syncflow.sinks.common_db.repository import (
    lock_unpublished,
    lock_unpublished_for_sweep,
    mark_published,
)
from syncflow.streams.avro import AvroCodec
from syncflow.streams.producer import ReliableProducer

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        engine: Engine,
        producer: ReliableProducer,
        codec: AvroCodec,
        topic_for: Callable[[str], str],
        *,
        send_timeout_s: float = 60.0,
    ):
        self._engine, self._producer, self._codec, self._topic_for = engine, producer, codec, topic_for
        self._send_timeout_s = send_timeout_s

    def publish_entities(self, entities: Iterable[EntityKey]) -> int:
        """Publish every unpublished version of these entities (older ones first), waiting
        for any other publisher of the same rows to finish."""
        keys = sorted(set(entities))
        if not keys:
            return 0
        with unit_of_work(self._engine) as session:
            versions = lock_unpublished(session, keys, limit=1_000_000)
            return self._send_and_mark(session, versions)

    def sweep(self, limit: int = 1000) -> int:
        """Publish committed-but-unpublished versions left behind (e.g. by a killed worker)."""
        total = 0
        while True:
            with unit_of_work(self._engine) as session:
                versions = lock_unpublished_for_sweep(session, limit=limit)
                sent = self._send_and_mark(session, versions)
            total += sent
            if sent < limit or sent == 0:
                break
        if total:
            log.info("outbox sweep published %d left-behind version(s)", total)
        return total

    def _send_and_mark(self, session, versions: list[NewVersion]) -> int:  # type: ignore[no-untyped-def]
        if not versions:
            return 0
        self._producer.send_all(change_records(versions, self._codec, self._topic_for), timeout=self._send_timeout_s)
        mark_published(session, [v.id for v in versions])
        return len(versions)


def outbox_backlog(engine: Engine) -> Callable[[], tuple[int, float | None]]:
    """The outbox backlog for the metrics: versions committed and not yet published, and the
    age in seconds of the oldest (read through the partial index on unpublished rows)."""

    def read() -> tuple[int, float | None]:
        with engine.connect() as conn:
            return counts.outbox_backlog(conn)

    return read
