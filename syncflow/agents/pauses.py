"""Operator pauses: a target (sync-out) or a source (sync-in), whole or narrowed to one
property and/or one entity type, held until resumed.

The state is the common database's `pauses` table (migration 0006, read and written by
sinks/common_db/pauses.py; `syncflow pause` / `resume` write it), so a pause survives
restarts of every worker and of PostgreSQL. Workers read it through `PauseRules`, a cache
refreshed every `settings.ops.pause_refresh_s` (2 s): a pause or resume takes effect within
about that long. A failed refresh keeps the rules last read (a database outage neither
lifts a pause nor invents one).

What "property" means (`record_property`, `PropertyResolver`):
- a location: its snapshot's `property_code`;
- a resident or a service request: the `property_code` of the location it references
  (`references["location"]`, else the snapshot's `location_id`), read from `locations`;
- an attachment: the property of its service request's location (`service_requests`);
- a source record on sync-in: the source's own property field (`PropertyCode`,
  `propertyCode`, `property_ref`, `property_code`), trimmed and upper-cased.
A record whose property cannot be found (no reference, a location not in the database yet,
a source record without a property field) is held only by pauses without a property.
Property codes compare upper-cased, as identity rules store them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine

from syncflow.sinks.common_db.pauses import (
    PauseScope,
    list_pauses,
    location_properties,
    norm_property,
    service_request_properties,
)

log = logging.getLogger(__name__)

PROPERTY_FIELDS = ("PropertyCode", "propertyCode", "property_ref", "property_code")


class PauseRules:
    """The pauses of one worker's side and system (None: every system of the side, as a
    sync-in worker reads every source), refreshed every `refresh_s`."""

    def __init__(self, engine: Engine, side: str, system: str | None, refresh_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.engine, self.side, self.system = engine, side, system
        self.refresh_s, self.clock = refresh_s, clock
        self.scopes: list[PauseScope] = []
        self._next = 0.0
        self._failing = False
        self._lock = threading.Lock()

    def due(self) -> bool:
        return self.clock() >= self._next

    def refresh(self) -> bool:
        """Read the rules now (blocking: call from a thread); True when they changed."""
        with self._lock:
            self._next = self.clock() + self.refresh_s
            try:
                scopes = list_pauses(self.engine, self.side, self.system)
            except Exception as exc:  # noqa: BLE001 - keep the last rules through an outage
                if not self._failing:
                    log.warning("pauses of %s %s not read, keeping the last %d: %s: %s", self.side, self.system,
                                len(self.scopes), type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                self._failing = True
                return False
            self._failing = False
            changed = [s.key for s in scopes] != [s.key for s in self.scopes]
            if changed:
                log.warning("%s %s: pauses now %s", self.side, self.system or "(every system)",
                            "; ".join(s.describe() for s in scopes) or "none")
            self.scopes = scopes
            return changed

    def refresh_if_due(self) -> bool:
        return self.refresh() if self.due() else False

    @property
    def active(self) -> bool:
        return bool(self.scopes)

    @property
    def by_property(self) -> bool:
        """Some rule needs the record's property to decide."""
        return any(s.prop for s in self.scopes)

    def holds(self, entity_type: str, prop: str | None) -> bool:
        return any(s.covers(entity_type, prop) for s in self.scopes)

    def holds_everything_of(self) -> bool:
        """A pause of the whole system (every property, every entity type)."""
        return any(not s.prop and not s.entity_type for s in self.scopes)


# -- the property of a record ------------------------------------------------------------------
def record_property(entity_type: str, snapshot: dict[str, Any]) -> str | None:
    """A property known from the snapshot alone (a location's property_code)."""
    value = snapshot.get("property_code")
    return norm_property(value) or None if value is not None else None


def source_property(record: dict[str, Any]) -> str | None:
    """A source record's own property field (sync-in)."""
    for name in PROPERTY_FIELDS:
        if record.get(name):
            return norm_property(record[name])
    return None


class PropertyResolver:
    """The property of a change event, looking up in the common database what the snapshot
    does not say. A location's id is derived from its property code, so what is found is
    kept (up to `max_cached` ids); what is not found is looked up again after `retry_s`."""

    def __init__(self, engine: Engine, max_cached: int = 200_000, retry_s: float = 2.0):
        self.engine, self.max_cached, self.retry_s = engine, max_cached, retry_s
        self._locations: dict[str, str] = {}
        self._service_requests: dict[str, str] = {}
        self._missing: dict[str, float] = {}  # id → monotonic time it may be looked up again

    @staticmethod
    def _refs(entity_type: str, snapshot: dict[str, Any], references: dict[str, str]) -> tuple[str | None, str | None]:
        location = references.get("location") or snapshot.get("location_id")
        service_request = references.get("service_request") or snapshot.get("service_request_id")
        return (str(location) if location else None, str(service_request) if service_request else None)

    def resolve(self, items: Iterable[tuple[str, dict[str, Any], dict[str, str]]]) -> list[str | None]:
        """(entity_type, snapshot, references) → property, for many at once (one query per
        table for what is not cached). Blocking: call from a thread."""
        items = list(items)
        now = time.monotonic()
        want_loc = {loc for t, s, r in items if record_property(t, s) is None
                    for loc, _ in [self._refs(t, s, r)] if loc and loc not in self._locations and self._missing.get(loc, 0) <= now}
        want_sr = {sr for t, s, r in items if record_property(t, s) is None
                   for loc, sr in [self._refs(t, s, r)] if not loc and sr and sr not in self._service_requests and self._missing.get(sr, 0) <= now}
        if want_loc or want_sr:
            if len(self._locations) + len(self._service_requests) > self.max_cached:
                self._locations.clear()
                self._service_requests.clear()
            with self.engine.connect() as conn:
                if want_loc:
                    self._locations.update({i: norm_property(p) for i, p in location_properties(conn, want_loc) if p})
                if want_sr:
                    self._service_requests.update(
                        {i: norm_property(p) for i, p in service_request_properties(conn, want_sr) if p})
            self._missing = {i: t for i, t in self._missing.items() if t > now}
            for i in (want_loc - self._locations.keys()) | (want_sr - self._service_requests.keys()):
                self._missing[i] = now + self.retry_s
        out: list[str | None] = []
        for t, s, r in items:
            prop = record_property(t, s)
            if prop is None:
                loc, sr = self._refs(t, s, r)
                prop = self._locations.get(loc) if loc else (self._service_requests.get(sr) if sr else None)
            out.append(prop)
        return out


# -- metrics -------------------------------------------------------------------------------------
class PauseCollector:
    """syncflow_paused_scopes and syncflow_held_records for one worker's side and system."""

    def __init__(self, rules: PauseRules, held: Callable[[], int]):
        self.rules, self.held = rules, held

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["side", "system"]
        scopes = GaugeMetricFamily("syncflow_paused_scopes", "Paused scopes (syncflow pause) of this worker's target or source", labels=labels)
        scopes.add_metric([self.rules.side, self.rules.system or ""], len(self.rules.scopes))
        held = GaugeMetricFamily("syncflow_held_records", "Records this worker holds because their scope is paused", labels=labels)
        held.add_metric([self.rules.side, self.rules.system or ""], self.held())
        return [scopes, held]


def register_pause_metrics(registry: CollectorRegistry, rules: PauseRules, held: Callable[[], int]) -> PauseCollector:
    collector = PauseCollector(rules, held)
    registry.register(collector)  # type: ignore[arg-type]
    return collector
