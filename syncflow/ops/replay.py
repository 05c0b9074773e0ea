"""Replay: move a consumer group's committed offsets back (or forward) so its workers re-read
records. Kafka is the log; a replay is only ever an offset change, and every effect
downstream is idempotent, so re-reading adds nothing that was already there.

Refused while the group has members: their next commit would overwrite the reset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from confluent_kafka.admin import AdminClient

from syncflow.errors import GroupActiveError, OpsError
from syncflow.streams import admin as kafka_admin
from syncflow.streams.admin import TP

ResetKind = Literal["earliest", "latest", "offset", "time"]


@dataclass(frozen=True)
class ResetTo:
    """Where to move: the oldest stored record, the end, an offset, or the first record at or
    after a time (epoch milliseconds)."""

    kind: ResetKind
    value: int | None = None

    def describe(self) -> str:
        if self.kind == "time" and self.value is not None:
            return "time " + datetime.fromtimestamp(self.value / 1000, timezone.utc).isoformat()
        return self.kind if self.value is None else f"{self.kind} {self.value}"


@dataclass(frozen=True)
class PartitionPlan:
    topic: str
    partition: int
    current: int | None  # committed offset; None when the group never committed here
    new: int
    low: int
    high: int

    @property
    def rereads(self) -> int:
        """Records the group will read again (0 when moving forward)."""
        start = self.high if self.current is None else self.current
        return max(start - self.new, 0)

    @property
    def skips(self) -> int:
        """Records the group will never read (when moving forward past them)."""
        start = self.low if self.current is None else self.current
        return max(self.new - start, 0)

    def to_dict(self) -> dict[str, object]:
        return {
            "topic": self.topic, "partition": self.partition, "current": self.current, "new": self.new,
            "low": self.low, "high": self.high, "rereads": self.rereads, "skips": self.skips,
        }  # fmt: skip


@dataclass(frozen=True)
class ReplayResult:
    group: str
    reset: ResetTo
    state: kafka_admin.GroupState
    plans: list[PartitionPlan]
    applied: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "group": self.group, "reset": self.reset.describe(), "group_state": self.state.state,
            "members": self.state.members, "applied": self.applied,
            "rereads": sum(p.rereads for p in self.plans), "partitions": [p.to_dict() for p in self.plans],
        }  # fmt: skip


def target_offsets(reset: ResetTo, marks: dict[TP, tuple[int, int]], at_time: dict[TP, int] | None = None) -> dict[TP, int]:
    """The new offset per partition, kept within what the partition still stores."""
    out: dict[TP, int] = {}
    for tp, (low, high) in marks.items():
        if reset.kind == "earliest":
            new = low
        elif reset.kind == "latest":
            new = high
        elif reset.kind == "offset":
            if reset.value is None:
                raise OpsError("an offset reset needs an offset")
            new = min(max(reset.value, low), high)
        else:
            found = (at_time or {}).get(tp, -1)
            new = high if found < 0 else min(max(found, low), high)  # nothing newer: the end
        out[tp] = new
    return out


def plan(committed: dict[TP, int], marks: dict[TP, tuple[int, int]], new: dict[TP, int]) -> list[PartitionPlan]:
    return [PartitionPlan(t, p, committed.get((t, p)), new[(t, p)], *marks[(t, p)]) for t, p in sorted(new)]


def replay(
    admin: AdminClient,
    group: str,
    topics: list[str],
    reset: ResetTo,
    *,
    partitions: list[int] | None = None,
    dry_run: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Plan the reset and, unless `dry_run`, apply it. Raises GroupActiveError when the group
    has members (a dry run reports them instead). `on_step` hears what it is doing."""
    step = on_step or (lambda _text: None)
    if not topics:
        raise OpsError("name at least one topic")
    step(f"reading the state of group {group}")
    state = kafka_admin.group_state(admin, group)
    if state.members and not dry_run:
        raise GroupActiveError(group, state.members)
    tps = [tp for tp in kafka_admin.topic_partitions(admin, topics) if partitions is None or tp[1] in partitions]
    if not tps:
        raise OpsError(f"no partition {partitions} in {', '.join(topics)}")
    step(f"reading the offsets of {len(tps)} partition(s)")
    marks = kafka_admin.watermarks(admin, tps)
    at_time = kafka_admin.offsets_for_time(admin, tps, reset.value) if reset.kind == "time" and reset.value is not None else None
    if reset.kind == "time" and reset.value is None:
        raise OpsError("a time reset needs a time")
    plans = plan(kafka_admin.committed_offsets(admin, group), marks, target_offsets(reset, marks, at_time))
    if not dry_run:
        step(f"moving {group} on {len(plans)} partition(s)")
        kafka_admin.alter_group_offsets(admin, group, {(p.topic, p.partition): p.new for p in plans})
    return ReplayResult(group, reset, state, plans, applied=not dry_run)
