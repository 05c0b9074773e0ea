"""The priority buffer: urgent first, one entity's versions in order, no starvation."""

from __future__ import annotations

from syncflow.agents.sync_out.priority import PriorityBuffer


def test_lowest_priority_number_first_then_arrival() -> None:
    b: PriorityBuffer[str] = PriorityBuffer(aging_s=0)
    for i in range(5):
        b.add(f"e{i}", 1, 9, f"low{i}", now=0)
    b.add("urgent", 1, 1, "urgent", now=1)
    assert [e.item for e in b.take(3, now=2)] == ["urgent", "low0", "low1"]
    assert len(b) == 3


def test_one_entity_leaves_one_version_at_a_time_in_version_order() -> None:
    b: PriorityBuffer[str] = PriorityBuffer(aging_s=0)
    b.add("a", 2, 9, "a2", now=0)
    b.add("a", 1, 9, "a1", now=0)
    b.add("a", 3, 1, "a3-urgent", now=0)  # urgent, but v1 and v2 must go first
    b.add("b", 1, 5, "b1", now=0)
    assert [e.item for e in b.take(10, now=0)] == ["b1", "a1"]
    assert [e.item for e in b.take(10, now=0)] == ["a2"]
    assert [e.item for e in b.take(10, now=0)] == ["a3-urgent"]
    assert b.take(10, now=0) == []


def test_aging_lets_an_old_low_priority_record_overtake_new_urgent_ones() -> None:
    b: PriorityBuffer[str] = PriorityBuffer(aging_s=10)
    b.add("old", 1, 10, "old-low", now=0)
    b.add("new", 1, 2, "new-urgent", now=85)  # old one has aged 8.5 steps: 1.5 < 2
    assert b.take(1, now=85)[0].item == "old-low"


def test_put_back_keeps_place_and_age() -> None:
    b: PriorityBuffer[str] = PriorityBuffer(aging_s=0)
    b.add("a", 1, 5, "a1", now=0)
    b.add("b", 1, 5, "b1", now=0)
    taken = b.take(2, now=0)
    b.put_back(taken)
    assert [e.item for e in b.take(2, now=0)] == ["a1", "b1"]


def test_drop_forgets_matching_items() -> None:
    b: PriorityBuffer[tuple[str, int]] = PriorityBuffer()
    b.add("a", 1, 5, ("t", 0), now=0)
    b.add("a", 2, 5, ("t", 1), now=0)
    b.add("b", 1, 5, ("t", 0), now=0)
    assert b.drop(lambda item: item[1] == 0) == 2
    assert len(b) == 1
    assert b.take(5, now=0)[0].item == ("t", 1)
