"""Commits never skip a record that is still pending."""

from __future__ import annotations

from syncflow.agents.sync_out.offsets import OffsetTracker

TP = ("changes.location", 0)


def test_commit_stops_at_the_oldest_pending_record() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.add(TP, o)
    t.done(TP, 11)
    t.done(TP, 12)
    assert t.committable() == {TP: 10}
    t.done(TP, 10)
    assert t.committable() == {TP: 13}


def test_only_moved_offsets_are_committable() -> None:
    t = OffsetTracker()
    t.add(TP, 0)
    t.done(TP, 0)
    assert t.committable() == {TP: 1}
    t.mark_committed({TP: 1})
    assert t.committable() == {}
    t.add(TP, 1)
    assert t.committable() == {}  # 1 is pending: position stays 1


def test_forget_drops_revoked_partitions() -> None:
    t = OffsetTracker()
    t.add(TP, 5)
    t.forget([TP])
    assert t.committable() == {}
    assert t.pending_count() == 0
