"""A reference that reaches the target only after the dependency wait ran out still brings
its dependants along: the dependant is parked in the DLQ (with its reason, as before) and
remembered in `parked_dependents`; once the target holds the reference, the worker sends it
again through the dependency lane and it is delivered, without an operator's redrive."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from syncflow.emulators.targets import emulator_state
from syncflow.sinks.common_db.engine import make_engine
from syncflow.streams.dead_letters import read_failure_headers
from syncflow.streams.metrics import create_metrics
from syncflow.streams.topics import sync_out_topics

from .conftest import fast_settings, location, pointing_at, read_topic, service_request, wait_for


def parked_ids(engine: Engine, ids: list[str]) -> list[tuple[str, list[str]]]:
    """(entity id, ids waited for) of the rows of these entities parked for ONE."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT entity_id, waiting_for_ids FROM parked_dependents WHERE target = 'one' AND entity_id = ANY(:ids) "
            "ORDER BY entity_id"), {"ids": ids})]


async def test_a_dependant_parked_for_a_late_reference_is_delivered_when_the_reference_arrives(
        so_settings, one_emulator, events, start_worker, unique: Callable[[str], str]) -> None:
    late, never = unique("sr-late"), unique("sr-never")
    late_loc, never_loc = unique("loc-late"), unique("loc-never")
    s = pointing_at(fast_settings(so_settings, so_settings.sync_out.topic_suffix, dependency_retry_delay_s=0.2,
                                  dependency_max_attempts=3, parked_release_interval_s=0.5),
                    "one", one_emulator, rate_per_minute=600_000)
    state = emulator_state(one_emulator)
    engine = make_engine(s)
    try:
        registry = CollectorRegistry()
        w = await start_worker(s, "one", metrics=create_metrics(registry))
        events.send([events.record("service_request", late, 1, service_request(late_loc), references={"location": late_loc}),
                     events.record("service_request", never, 1, service_request(never_loc),
                                   references={"location": never_loc})])
        await wait_for(lambda: w.worker.stats["dead-lettered"] == 2, 60, "both service requests parked")
        assert parked_ids(engine, [late, never]) == sorted([(late, [late_loc]), (never, [never_loc])])
        assert not any(a.external_id in (late, never) for a in state.received)
        with engine.connect() as conn:  # the schema is shared: rows other tests left count too
            rows = conn.execute(text("SELECT count(*) FROM parked_dependents WHERE target = 'one'")).scalar_one()
        assert registry.get_sample_value("syncflow_backlog", {"queue": "parked.one"}) == rows >= 2

        events.send([events.record("location", late_loc, 1, location("late"))])  # the late reference
        await wait_for(lambda: any(a.external_id == late for a in state.received), 60,
                       "the parked service request after its location")
        await wait_for(lambda: parked_ids(engine, [late, never]) == [(never, [never_loc])], 30,
                       "the released row forgotten, the other still waiting")
        assert w.worker.stats["released"] == 1
        assert not any(a.external_id == never for a in state.received)  # its reference never came
        with engine.connect() as conn:
            synced = conn.execute(text("SELECT synced_version FROM target_sync_state WHERE target = 'one' "
                                       "AND entity_id = :id"), {"id": late}).scalar_one()
        assert synced == 1
        await w.stop()
        dlq = read_topic(s, sync_out_topics(s, "one").dlq, 2)  # the park itself stays on record
        assert {m.key() for m in dlq} == {late.encode(), never.encode()}
        assert all(read_failure_headers(m.headers())["error.category"] == "dependency" for m in dlq)
    finally:
        engine.dispose()
