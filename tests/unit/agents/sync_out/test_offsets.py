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


def test_a_failed_asynchronous_commit_is_sent_again() -> None:
    t = OffsetTracker()
    t.add(TP, 0)
    t.done(TP, 0)
    t.mark_committed(t.committable())  # sent asynchronously
    assert t.committable() == {}
    t.commit_failed([TP])  # the broker refused it
    assert t.committable() == {TP: 1}


def test_positions_include_partitions_already_committed() -> None:
    """A synchronous commit (stop, revoke) sends every partition's position, whatever an
    asynchronous commit before it did."""
    t = OffsetTracker()
    other = ("changes.location", 1)
    for tp in (TP, other):
        t.add(tp, 4)
    t.done(TP, 4)
    t.mark_committed({TP: 5})
    assert t.committable() == {other: 4}
    assert t.positions() == {TP: 5, other: 4}
