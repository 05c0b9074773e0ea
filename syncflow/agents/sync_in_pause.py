"""Sync-in's side of `syncflow pause --source S [--property P] [--entity-type E]`.

A faust batch mixes the raw topics, so the batch is split by source: records of a paused
scope are held by this worker, not acknowledged (faust commits no offset past an
unacknowledged record, so a restarted or rebalanced worker reads them again), and the rest
goes through the handler at once. A record whose key (entity type and source id) already
has a held record is held behind it, so one source record's versions keep their order. When
the pause is lifted the held records go through first, in the order they arrived.

Held records are kept in memory up to `ops.pause_hold_max`; beyond that the worker takes no
new batch until the pause is lifted (every source waits: memory stays bounded, nothing is
lost). The raw topic's partitions are deliberately not paused through faust: faust drops
records already fetched for a partition paused meanwhile, which would leave a gap that no
commit passes until the next rebalance. At a rebalance or a stop the held records are let
go unacknowledged (faust waits for every record it handed out): whoever owns the partition
next reads them again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from syncflow.agents.pauses import PauseRules, source_property
from syncflow.streams.avro import AvroCodec

log = logging.getLogger(__name__)


class SourceHold:
    def __init__(self, rules: PauseRules, codec: AvroCodec, raw_topics: Mapping[str, str], hold_max: int = 20_000):
        self.rules, self.codec, self.raw_topics, self.hold_max = rules, codec, raw_topics, hold_max
        self.held: list[Any] = []  # faust events, in arrival order
        self._keys: set[tuple[str, bytes]] = set()

    # -- deciding -------------------------------------------------------------------------------
    def _source(self, event: Any) -> str | None:
        return self.raw_topics.get(event.message.topic)

    def _holds(self, event: Any) -> bool:
        source = self._source(event)
        if source is None:
            return False
        scopes = [s for s in self.rules.scopes if s.system == source]
        if not scopes:
            return False
        key: bytes = event.message.key or b""
        entity_type = key.split(b":", 1)[0].decode(errors="replace")
        prop = None
        if any(s.prop for s in scopes):
            try:
                prop = source_property(self.codec.decode(event.message.value or b"", topic=event.message.topic).record)
            except Exception:  # noqa: BLE001 - undecodable: no property; the handler dead-letters it
                prop = None
        return any(s.covers(entity_type, prop) for s in scopes)

    def admit(self, events: Iterable[Any]) -> list[Any]:
        """What to handle now: held records no longer paused (first, in arrival order), then
        the new ones neither paused nor behind a held record of their key. The rest is held."""
        go: list[Any] = []
        keep: list[Any] = []
        self._keys = set()
        for event in [*self.held, *events]:
            key = (event.message.topic, event.message.key or b"")
            if key in self._keys or self._holds(event):
                keep.append(event)
                self._keys.add(key)
            else:
                go.append(event)
        self.held = keep
        return go

    def count(self, source: str | None = None) -> int:
        return sum(1 for e in self.held if source is None or self._source(e) == source)

    @property
    def full(self) -> bool:
        return len(self.held) > self.hold_max

    def let_go(self) -> list[Any]:
        """Every held record, forgotten (to be released unacknowledged)."""
        held, self.held, self._keys = self.held, [], set()
        return held


class SourceHoldCollector:
    """syncflow_paused_scopes and syncflow_held_records per source, for a sync-in worker."""

    def __init__(self, hold: SourceHold):
        self.hold = hold

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["side", "system"]
        scopes = GaugeMetricFamily("syncflow_paused_scopes", "Paused scopes (syncflow pause) of this worker's target or source", labels=labels)
        held = GaugeMetricFamily("syncflow_held_records", "Records this worker holds because their scope is paused", labels=labels)
        for source in sorted(set(self.hold.raw_topics.values())):
            scopes.add_metric(["sync-in", source], sum(1 for s in self.hold.rules.scopes if s.system == source))
            held.add_metric(["sync-in", source], self.hold.count(source))
        return [scopes, held]


def register_source_hold_metrics(registry: CollectorRegistry, hold: SourceHold) -> None:
    registry.register(SourceHoldCollector(hold))  # type: ignore[arg-type]


async def refresh(rules: PauseRules) -> None:
    if rules.due():
        await asyncio.to_thread(rules.refresh)


def source_hold(settings: Any, engine: Any, codec: AvroCodec, raw_topics: Mapping[str, str]) -> SourceHold:
    """The hold of a sync-in worker: the pauses of every source, re-read every pause_refresh_s."""
    rules = PauseRules(engine, "sync-in", None, settings.ops.pause_refresh_s)
    return SourceHold(rules, codec, raw_topics, settings.ops.pause_hold_max)
