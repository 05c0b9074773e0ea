"""A bounded window of fetched records served lowest priority number first.

Only the oldest pending version of an entity is ever eligible, so an entity's versions leave
in order however their priorities differ; waiting records age (decisions.effective_priority)
so a backlog of low priority still drains while urgent records overtake it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from syncflow.agents.sync_out.decisions import effective_priority

T = TypeVar("T")


@dataclass(order=False)
class Entry(Generic[T]):
    entity: str  # the ordering key: one entity's records leave one at a time, by version
    version: int
    priority: int
    enqueued_at: float
    seq: int
    item: T


@dataclass
class PriorityBuffer(Generic[T]):
    aging_s: float = 30.0
    _queues: dict[str, list[Entry[T]]] = field(default_factory=dict)
    _size: int = 0
    _seq: itertools.count = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return self._size

    def add(self, entity: str, version: int, priority: int, item: T, now: float) -> None:
        self._insert(Entry(entity, version, priority, now, next(self._seq), item))

    def _insert(self, entry: Entry[T]) -> None:
        queue = self._queues.setdefault(entry.entity, [])
        queue.append(entry)
        queue.sort(key=lambda e: (e.version, e.seq))
        self._size += 1

    def take(self, n: int, now: float, held: Collection[str] = ()) -> list[Entry[T]]:
        """Up to n entries, at most one per entity (its lowest version), most urgent first.
        Entities in `held` (paused) give nothing: their records stay, in order, behind the head."""
        heads = [q[0] for e, q in self._queues.items() if q and e not in held]
        heads.sort(key=lambda e: (effective_priority(e.priority, now - e.enqueued_at, self.aging_s), e.seq))
        chosen = heads[: max(0, n)]
        for entry in chosen:
            queue = self._queues[entry.entity]
            queue.pop(0)
            if not queue:
                del self._queues[entry.entity]
            self._size -= 1
        return chosen

    def heads(self) -> list[Entry[T]]:
        """Each entity's next record (its lowest version)."""
        return [q[0] for q in self._queues.values() if q]

    def count_of(self, entities: Iterable[str]) -> int:
        """Records buffered for these entities."""
        return sum(len(self._queues.get(e, ())) for e in entities)

    def put_back(self, entries: Iterable[Entry[T]]) -> None:
        """Return taken entries untouched (same place in the order, same age)."""
        for entry in entries:
            self._insert(entry)

    def drop(self, matches: Callable[[T], bool]) -> int:
        """Forget the entries whose item matches (e.g. of partitions no longer assigned)."""
        dropped = 0
        for entity in list(self._queues):
            kept = [e for e in self._queues[entity] if not matches(e.item)]
            dropped += len(self._queues[entity]) - len(kept)
            if kept:
                self._queues[entity] = kept
            else:
                del self._queues[entity]
        self._size -= dropped
        return dropped
