"""Which offsets may be committed: per partition, everything below the oldest record that is
still pending. Records finish out of order (priority, retries), the commit never skips one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

TopicPartitionKey = tuple[str, int]


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    next_offset: int = -1  # one past the highest offset seen
    committed: int = -1


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _Partition] = {}

    def add(self, tp: TopicPartitionKey, offset: int) -> None:
        """A record was taken in; it holds back the commit until done()."""
        p = self._partitions.setdefault(tp, _Partition())
        p.pending.add(offset)
        p.next_offset = max(p.next_offset, offset + 1)

    def done(self, tp: TopicPartitionKey, offset: int) -> None:
        p = self._partitions.get(tp)
        if p is not None:
            p.pending.discard(offset)

    def pending_count(self) -> int:
        return sum(len(p.pending) for p in self._partitions.values())

    def committable(self) -> dict[TopicPartitionKey, int]:
        """Offsets to commit now (the next offset to read), only where they moved."""
        out: dict[TopicPartitionKey, int] = {}
        for tp, p in self._partitions.items():
            if p.next_offset < 0:
                continue
            position = min(p.pending) if p.pending else p.next_offset
            if position > p.committed:
                out[tp] = position
        return out

    def positions(self) -> dict[TopicPartitionKey, int]:
        """Every partition's offset to commit, moved or not (a synchronous commit of all)."""
        return {tp: min(p.pending) if p.pending else p.next_offset for tp, p in self._partitions.items() if p.next_offset >= 0}

    def commit_failed(self, tps: Iterable[TopicPartitionKey]) -> None:
        """An asynchronous commit of these partitions failed: the next commit sends them again."""
        for tp in tps:
            if tp in self._partitions:
                self._partitions[tp].committed = -1

    def mark_committed(self, offsets: dict[TopicPartitionKey, int]) -> None:
        for tp, offset in offsets.items():
            if tp in self._partitions:
                self._partitions[tp].committed = max(self._partitions[tp].committed, offset)

    def forget(self, tps: Iterable[TopicPartitionKey]) -> None:
        """Partitions revoked: their pending records belong to the next owner."""
        for tp in tps:
            self._partitions.pop(tp, None)
