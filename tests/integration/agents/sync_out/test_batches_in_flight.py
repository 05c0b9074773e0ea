"""A worker keeps `sync_out.batches_in_flight` batches going at once: the next batch is
locked, checked and sent while the one before is still at the target, and a record whose
reference is in the other batch waits for it instead of taking the dependency lane."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syncflow.emulators.targets import emulator_state

from .conftest import fast_settings, location, pointing_at, service_request, wait_for

LATENCY_S = 3.0  # every call this long at the target: far longer than a batch's own work


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_the_next_batch_goes_while_one_is_at_the_target(
        so_settings, one_emulator, events, start_worker, unique: Callable[[str], str], in_flight: int) -> None:
    """Two batches of five. One after the other, the second batch's calls start only once
    the first batch's answers came back, so its records are applied at least LATENCY_S after
    the first batch's; in flight together, all ten are applied within LATENCY_S."""
    ids = [unique(f"loc-{i}") for i in range(10)]
    s = pointing_at(fast_settings(so_settings, so_settings.sync_out.topic_suffix, batch_size=5, batches_in_flight=in_flight),
                    "one", one_emulator, rate_per_minute=600_000, concurrency=10)
    state = emulator_state(one_emulator)
    state.set_faults({"latency_ms": LATENCY_S * 1000})
    events.send([events.record("location", i, 1, location(n)) for n, i in enumerate(ids)])
    w = await start_worker(s, "one")
    await wait_for(lambda: sum(a.external_id in ids for a in state.received) == 10, 120, "all ten applied")
    await w.stop()
    times = sorted(a.time for a in state.received if a.external_id in ids)
    assert w.worker.stats["batches"] >= 2
    if in_flight == 1:
        assert times[-1] - times[0] >= LATENCY_S
    else:
        assert times[-1] - times[0] < LATENCY_S


async def test_a_record_whose_reference_is_in_the_other_batch_waits_for_it(
        so_settings, one_emulator, events, start_worker, unique: Callable[[str], str]) -> None:
    """The location is at the target (in flight) when its service request's batch is checked:
    the service request goes back into the buffer and follows, with no dependency wait."""
    loc, sr = unique("loc"), unique("sr")
    s = pointing_at(fast_settings(so_settings, so_settings.sync_out.topic_suffix, batch_size=1, batches_in_flight=2),
                    "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    state.set_faults({"latency_ms": LATENCY_S * 1000})
    w = await start_worker(s, "one")
    events.send([events.record("location", loc, 1, location("a"))])
    await wait_for(lambda: w.worker.batches_in_flight == 1, 60, "the location's batch in flight")
    events.send([events.record("service_request", sr, 1, service_request(loc), references={"location": loc})])
    await wait_for(lambda: any(a.external_id == sr for a in state.received), 120, "the service request applied")
    await w.stop()
    order = [a.external_id for a in state.received if a.external_id in (loc, sr)]
    assert order == [loc, sr]
    assert w.worker.stats["deferred"] >= 1  # checked while its location was in flight
    assert w.worker.stats["retried"] == 0  # never sent to the dependency lane
