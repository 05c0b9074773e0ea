"""The outbox relay marks a version published only once Kafka acknowledged its change event:
a send the broker does not acknowledge leaves the version unpublished (for the next publish
or the sweeper), on the batch's own publish and on the sweeper's alike."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from syncflow.agents.outbox import OutboxRelay, outbox_backlog
from syncflow.sinks.common_db.engine import unit_of_work
from syncflow.sinks.common_db.repository import upsert_versions
from syncflow.model import EntityRecord
from syncflow.streams.avro import codec_for
from syncflow.streams.producer import OutgoingRecord
from syncflow.errors import NotAcknowledgedError
from syncflow.settings import Settings

pytestmark = pytest.mark.integration


class Unacknowledged:
    """A producer whose broker acknowledges nothing (as ReliableProducer reports it)."""

    def __init__(self) -> None:
        self.attempts = 0

    def send_all(self, records: Iterable[OutgoingRecord], timeout: float = 60.0) -> int:
        self.attempts += 1
        raise NotAcknowledgedError([(r, None) for r in records])


class Acknowledged:
    """A producer whose broker acknowledges every record; keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[OutgoingRecord] = []

    def send_all(self, records: Iterable[OutgoingRecord], timeout: float = 60.0) -> int:
        records = list(records)
        self.sent += records
        return len(records)



def location(entity_id: str, name: str) -> EntityRecord:
    entity = {
        "entity_id": entity_id, "location_type": "property", "property_code": "P1", "name": name,
        "country": "US", "status": "active", "source_system": "yardi", "source_id": f"src-{entity_id}",
        "source_updated_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "deleted": False,
    }
    return EntityRecord("location", entity_id, entity, f"h-{name}", "yardi", f"src-{entity_id}", priority=5)


def unpublished(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT entity_id, version_number FROM data_versions "
                                 "WHERE published_at IS NULL ORDER BY entity_id, version_number")).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def relay(engine: Engine, settings: Settings, producer: object) -> OutboxRelay:
    return OutboxRelay(engine, producer, codec_for(settings), lambda et: f"changes.{et}", send_timeout_s=1.0)  # type: ignore[arg-type]


def test_a_version_kafka_did_not_acknowledge_stays_unpublished_until_one_it_did(settings: Settings, engine: Engine) -> None:
    with unit_of_work(engine) as session:
        upsert_versions(session, [location("loc-a", "A"), location("loc-b", "B")])
    with unit_of_work(engine) as session:
        upsert_versions(session, [location("loc-a", "A2")])
    assert unpublished(engine) == [("loc-a", 1), ("loc-a", 2), ("loc-b", 1)]

    refused = Unacknowledged()
    with pytest.raises(NotAcknowledgedError):
        relay(engine, settings, refused).publish_entities([("location", "loc-a")])
    assert unpublished(engine) == [("loc-a", 1), ("loc-a", 2), ("loc-b", 1)]
    with pytest.raises(NotAcknowledgedError):
        relay(engine, settings, refused).sweep()
    assert refused.attempts == 2
    assert unpublished(engine) == [("loc-a", 1), ("loc-a", 2), ("loc-b", 1)]

    acked = Acknowledged()
    assert relay(engine, settings, acked).publish_entities([("location", "loc-a")]) == 2
    assert [r.key for r in acked.sent] == [b"loc-a", b"loc-a"]
    assert unpublished(engine) == [("loc-b", 1)]
    assert relay(engine, settings, acked).sweep() == 1
    assert unpublished(engine) == []
    assert relay(engine, settings, acked).sweep() == 0
    assert [r.key for r in acked.sent] == [b"loc-a", b"loc-a", b"loc-b"]


def test_outbox_backlog_counts_unpublished_versions_and_ages_the_oldest(settings: Settings, engine: Engine) -> None:
    read = outbox_backlog(engine)
    assert read() == (0, None)
    with unit_of_work(engine) as session:
        upsert_versions(session, [location("loc-a", "A"), location("loc-b", "B")])
    with engine.begin() as conn:  # committed ten minutes ago
        conn.execute(text("UPDATE data_versions SET created_date = now() - interval '10 minutes' WHERE entity_id = 'loc-a'"))
    count, oldest = read()
    assert count == 2 and oldest is not None and 600 <= oldest < 660
    assert relay(engine, settings, Acknowledged()).sweep() == 2
    assert read() == (0, None)
