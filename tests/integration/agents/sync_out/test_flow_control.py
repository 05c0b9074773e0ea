"""Rate limit, 429 backpressure and priority on the real stack."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text

from syncflow.agents.sync_out.rate_limit import RateLimiter
from syncflow.emulators.targets import emulator_state
from syncflow.sinks.common_db.engine import make_engine

from .conftest import fast_settings, location, pointing_at, wait_for


def test_limiter_is_shared_and_blocked_group_wide(so_settings) -> None:
    """Two limiters on one row (two workers): tokens are shared, a 429 block holds both."""
    engine = make_engine(so_settings, pool_size=2)
    try:
        a = RateLimiter(engine, "one", rate_per_minute=600, burst_s=1.0)  # 10/s, capacity 10
        b = RateLimiter(engine, "one", rate_per_minute=600, burst_s=1.0)
        a.ensure()
        b.ensure()
        assert a.try_acquire(7).granted == 7
        grant = b.try_acquire(7)
        assert grant.granted == 3 and 0 < grant.wait_s <= 0.1 + 1e-6
        a.refund(2)
        assert b.try_acquire(5).granted == 2
        a.block_for(1.5)
        blocked = b.try_acquire(1)
        assert blocked.granted == 0 and 1.0 < blocked.wait_s <= 1.5
        time.sleep(1.6)
        assert b.try_acquire(1).granted == 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sync_out_rate_limit")).scalar() == 1
    finally:
        engine.dispose()


async def test_429_with_retry_after_holds_the_worker_back(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(fast_settings(so_settings, so_settings.sync_out.topic_suffix, batch_size=5), "one", one_emulator,
                    rate_per_minute=600_000, concurrency=1)
    state = emulator_state(one_emulator)
    state.set_faults({"next_429": 1, "retry_after_s": 1.5})
    events.send([events.record("location", f"loc-{i}", 1, location(i)) for i in range(30)])
    w = await start_worker(s, "one")
    await wait_for(lambda: len(state.received) == 30, what="all 30 after the 429")
    await w.stop()
    assert state.counters["rate_limited"] == 1
    times = sorted(a.time for a in state.received)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) >= 1.4  # nobody called the target during Retry-After
    assert gaps.index(max(gaps)) < 5  # and the wait came right after the 429, in the first batch
    assert state.counters["requests"] == 31
    assert w.worker.stats["rate-limited"] == 1 and w.worker.stats["retried"] == 0


async def test_urgent_records_overtake_a_backlog(so_settings, one_emulator, events, start_worker) -> None:
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=600, rate_burst_s=0.1)  # 10/s
    state = emulator_state(one_emulator)
    backlog = [events.record("location", f"loc-low-{i}", 1, location(i), priority=9) for i in range(60)]
    urgent = [events.record("location", f"loc-urgent-{i}", 1, location(f"u{i}"), priority=1) for i in range(5)]
    events.send(backlog + urgent)
    w = await start_worker(s, "one")
    await wait_for(lambda: len(state.received) >= 20, what="20 deliveries")
    await w.stop()
    order = [a.external_id for a in state.received]
    positions = [order.index(u["entity_id"]) for u in urgent]
    assert max(positions) < 12, order[:20]


async def test_two_workers_share_partitions_and_hold_the_rate_limit(so_settings, one_emulator, events, start_worker) -> None:
    limit_per_s = 20.0
    s = pointing_at(so_settings, "one", one_emulator, rate_per_minute=limit_per_s * 60, rate_burst_s=0.25)
    state = emulator_state(one_emulator)
    n = 240
    events.send([events.record("location", f"loc-{i}", 1, location(i)) for i in range(n)])
    w1 = await start_worker(s, "one")
    w2 = await start_worker(s, "one")
    await wait_for(lambda: len(state.received) == n, timeout=60, what=f"{n} deliveries")
    await asyncio.sleep(0.3)
    await w1.stop()
    await w2.stop()
    times = sorted(a.time for a in state.received)
    rate = (len(times) - 1) / (times[-1] - times[0])
    print(f"measured {rate:.2f}/s against a limit of {limit_per_s}/s over {times[-1] - times[0]:.1f}s")
    assert rate <= limit_per_s * 1.05
    assert rate >= limit_per_s * 0.7  # and the limit is actually used
    assert w1.worker.stats["delivered"] > 0 and w2.worker.stats["delivered"] > 0
    assert w1.worker.stats["delivered"] + w2.worker.stats["delivered"] == n
    assert len({a.external_id for a in state.received}) == n
