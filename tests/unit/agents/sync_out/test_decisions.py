"""The plain decisions of sync-out: echo, stale, dependencies, routing, aging."""

from __future__ import annotations

from syncflow.agents.sync_out.decisions import (
    effective_priority,
    is_echo,
    is_stale,
    missing_references,
    references_of,
    route_failure,
    waits_for_batch,
)
from syncflow.model import ChangeEvent
from syncflow.errors import (
    DependencyNotMetError,
    PermanentTargetError,
    RateLimitedError,
    TransientTargetError,
    ValidationError,
)
from syncflow.settings import SyncOutSettings


def event(**kw: object) -> ChangeEvent:
    base: dict = dict(entity_type="service_request", entity_id="sr-1", version=3, change_type="update",
                      origin_source="yardi", origin_source_id="Y1", priority=5, snapshot={})
    base.update(kw)
    return ChangeEvent(**base)


def test_echo_only_when_enabled_and_from_the_target() -> None:
    assert is_echo(event(origin_source="lessen360"), "lessen360", True)
    assert not is_echo(event(origin_source="lessen360"), "lessen360", False)
    assert not is_echo(event(origin_source="yardi"), "lessen360", True)


def test_stale_is_at_or_below_the_synced_version() -> None:
    assert is_stale(event(version=3), 3)
    assert is_stale(event(version=2), 3)
    assert not is_stale(event(version=4), 3)
    assert not is_stale(event(version=1), 0)
    assert is_stale(event(version=1), 0, 3)  # v3 was handed over, its outcome never recorded
    assert not is_stale(event(version=3), 0, 3)  # v3 itself goes again, same idempotency key
    assert not is_stale(event(version=4), 0, 3)


def test_missing_references_need_a_delivered_version() -> None:
    ev = event(references={"location": "loc-1", "resident": "res-1"})
    assert references_of(ev) == [("location", "loc-1"), ("resident", "res-1")]
    assert missing_references(ev, {}) == [("location", "loc-1"), ("resident", "res-1")]
    assert missing_references(ev, {("location", "loc-1"): 1}) == [("resident", "res-1")]
    assert missing_references(ev, {("location", "loc-1"): 2, ("resident", "res-1"): 1}) == []


def test_references_of_types_the_target_never_receives_are_not_waited_for() -> None:
    ev = event(references={"location": "loc-1", "resident": "res-1"})
    assert missing_references(ev, {}, taken={"location", "service_request"}) == [("location", "loc-1")]


def test_self_and_empty_references_are_not_dependencies() -> None:
    ev = event(entity_type="location", entity_id="loc-1", references={"location": "loc-1"})
    assert missing_references(ev, {}) == []


def test_transient_errors_climb_the_tiers_then_dlq() -> None:
    s = SyncOutSettings(retry_delays_s=[1.0, 2.0, 3.0])
    err = TransientTargetError("503", 503)
    assert [route_failure(err, a, s).kind for a in (1, 2, 3, 4)] == ["retry", "retry", "retry", "dlq"]
    assert [route_failure(err, a, s).tier for a in (1, 2, 3)] == [1, 2, 3]
    assert [route_failure(err, a, s).delay_s for a in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert route_failure(RateLimitedError("429", 1.0), 1, s).kind == "retry"


def test_permanent_and_bad_input_go_to_the_dlq_at_once() -> None:
    s = SyncOutSettings()
    assert route_failure(PermanentTargetError("422", 422), 1, s).kind == "dlq"
    assert route_failure(ValidationError([]), 1, s).kind == "dlq"
    assert route_failure(RuntimeError("bug"), 1, s).kind == "dlq"


def test_dependency_waits_go_to_their_own_lane_until_their_own_limit() -> None:
    s = SyncOutSettings(retry_delays_s=[1.0, 2.0], dependency_retry_delay_s=0.5, dependency_max_attempts=4)
    err = DependencyNotMetError([("location", "loc-1")])
    routes = [route_failure(err, a, s) for a in (1, 2, 3, 4)]
    assert [(r.kind, r.tier) for r in routes] == [("wait", 0), ("wait", 0), ("wait", 0), ("dlq", 0)]
    assert all(r.delay_s == 0.5 for r in routes[:3])


def test_aging_lowers_the_priority_number() -> None:
    assert effective_priority(10, 0, 30) == 10
    assert effective_priority(10, 90, 30) == 7
    assert effective_priority(3, 1000, 0) == 3


def test_a_reference_delivered_in_the_same_batch_is_waited_for_in_the_buffer() -> None:
    loc, res = ("location", "loc-1"), ("resident", "res-1")
    assert waits_for_batch([loc], {loc, ("service_request", "sr-1")})
    assert not waits_for_batch([loc, res], {loc})
    assert not waits_for_batch([], {loc})


def test_dependency_waits_do_not_use_up_the_retries_owed_to_a_transient_error() -> None:
    from syncflow.agents.sync_out.decisions import route_failure
    from syncflow.errors import TransientTargetError
    from syncflow.settings import SyncOutSettings

    settings = SyncOutSettings(retry_delays_s=[1.0, 2.0, 3.0])
    error = TransientTargetError("502", 502)
    # the sixth attempt, after five dependency waits, is only the first transient failure
    route = route_failure(error, attempt=6, settings=settings, transient_failures=1)
    assert (route.kind, route.tier) == ("retry", 1)
    assert route_failure(error, attempt=6, settings=settings, transient_failures=4).kind == "dlq"
    assert route_failure(error, attempt=6, settings=settings).kind == "dlq"
