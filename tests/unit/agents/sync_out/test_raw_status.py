"""The outbound-status writer coalesces statuses, writes them behind the delivery path and
keeps them through a failing raw store."""

from __future__ import annotations

import time

from syncflow.agents.sync_out.raw_status import OutboundStatusWriter


class RecordingSink:
    """A raw store stand-in that records each bulk write and fails while `down` is set."""

    def __init__(self) -> None:
        self.writes: list[list[tuple[str, str, str, str, str]]] = []
        self.down = False

    def set_outbound_statuses(self, items: list[tuple[str, str, str, str, str]]) -> None:
        if self.down:
            raise ConnectionError("raw store down")
        self.writes.append(list(items))


def test_statuses_are_coalesced_into_one_write_per_interval() -> None:
    sink = RecordingSink()
    writer = OutboundStatusWriter(sink, interval_s=3600)
    writer.set_outbound_statuses([("yardi", "location", "1", "one", "retry"), ("yardi", "location", "2", "one", "synced")])
    writer.set_outbound_statuses([("yardi", "location", "1", "one", "synced"), ("yardi", "location", "1", "lessen360", "failed")])
    assert sink.writes == [] and writer.pending_count() == 3
    writer.close()
    assert sink.writes == [[("yardi", "location", "1", "one", "synced"), ("yardi", "location", "2", "one", "synced"),
                            ("yardi", "location", "1", "lessen360", "failed")]]


def test_a_failed_write_is_kept_and_newer_statuses_win() -> None:
    sink = RecordingSink()
    writer = OutboundStatusWriter(sink, interval_s=3600)
    sink.down = True
    writer.set_outbound_statuses([("yardi", "location", "1", "one", "retry"), ("yardi", "location", "2", "one", "retry")])
    assert writer.flush() is False and writer.pending_count() == 2
    writer.set_outbound_statuses([("yardi", "location", "1", "one", "synced")])
    sink.down = False
    assert writer.flush() is True
    assert sorted(sink.writes[0]) == [("yardi", "location", "1", "one", "synced"), ("yardi", "location", "2", "one", "retry")]
    writer.close()
    assert len(sink.writes) == 1  # nothing left to write


def test_the_background_thread_writes_within_the_interval() -> None:
    sink = RecordingSink()
    writer = OutboundStatusWriter(sink, interval_s=0.05)
    writer.set_outbound_statuses([("insight", "resident", "7", "one", "synced")])
    deadline = time.monotonic() + 5
    while not sink.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.close()
    assert sink.writes == [[("insight", "resident", "7", "one", "synced")]]


def test_backlog_counts_pending_statuses_and_ages_the_oldest_through_failed_writes() -> None:
    sink = RecordingSink()
    writer = OutboundStatusWriter(sink, interval_s=3600)
    assert writer.backlog() == (0, None)
    sink.down = True
    writer.set_outbound_statuses([("yardi", "location", "1", "one", "retry")])
    time.sleep(0.05)
    writer.set_outbound_statuses([("yardi", "location", "2", "one", "retry")])
    assert writer.flush() is False
    count, oldest = writer.backlog()
    assert count == 2 and oldest is not None and oldest >= 0.05  # the first status's age, kept through the failure
    sink.down = False
    assert writer.flush() is True
    assert writer.backlog() == (0, None)
    writer.close()
