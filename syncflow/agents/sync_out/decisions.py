"""The decisions between the I/O: what to do with one change event for one target. Plain
functions, so every rule is unit-tested without Kafka, a database or a target."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from syncflow.model import ChangeEvent, EntityKey
from syncflow.errors import DependencyNotMetError, RetryLaterError
from syncflow.settings import SyncOutSettings



def is_echo(event: ChangeEvent, target: str, echo_suppression: bool) -> bool:
    """A change that came from the target itself is not sent back to it."""
    return echo_suppression and event.origin_source == target


def is_stale(event: ChangeEvent, synced_version: int, sent_version: int = 0) -> bool:
    """The target already holds this version or a newer one, or a newer one has been handed
    to it (its outcome perhaps never recorded): sending this one would go backwards. The
    version last sent itself is not stale: it is sent again, under the same idempotency key."""
    return event.version <= synced_version or event.version < sent_version


def references_of(event: ChangeEvent, taken: Collection[str] | None = None) -> list[EntityKey]:
    """What the entity depends on at a target that takes the entity types `taken` (all when
    None): a type the target never receives cannot be waited for, and a self-reference is
    not a dependency."""
    return [
        (t, i) for t, i in sorted(event.references.items())
        if i and (t, i) != (event.entity_type, event.entity_id) and (taken is None or t in taken)
    ]


def missing_references(event: ChangeEvent, synced: Mapping[EntityKey, int], taken: Collection[str] | None = None) -> list[EntityKey]:
    """References the target does not hold yet (no version of them delivered there)."""
    return [ref for ref in references_of(event, taken) if synced.get(ref, 0) < 1]


def waits_for_batch(missing: Collection[EntityKey], in_batch: Collection[EntityKey]) -> bool:
    """Every missing reference is being delivered in the same batch: the record only has to
    wait for the next batch, not for a retry tier (a location and its service request that
    arrive together)."""
    return bool(missing) and all(ref in in_batch for ref in missing)


@dataclass(frozen=True)
class Route:
    """Where a failed record goes: retry tier `tier` after `delay_s`, the dependency-wait
    lane after `delay_s` ("wait", tier 0), or the DLQ."""

    kind: str  # "retry" | "wait" | "dlq"
    tier: int = 0
    delay_s: float = 0.0


DLQ = Route("dlq")


def route_failure(error: BaseException, attempt: int, settings: SyncOutSettings,
                  transient_failures: int | None = None) -> Route:
    """The route after attempt number `attempt` (1 = the first try) failed with `error`.

    Transient errors climb the retry tiers and land in the DLQ after the last one; a missing
    dependency waits in its own lane (one delay for every record there, so a wait never
    queues behind a tier's longer delay) up to dependency_max_attempts; anything else (4xx,
    bad input, an unexpected error) goes to the DLQ at once. `transient_failures` counts only the
    transient failures so far (this one included), so time spent waiting for a dependency
    does not use up the retries a later 5xx is owed; without it, `attempt` counts."""
    tiers = settings.retry_tiers
    if isinstance(error, DependencyNotMetError):
        if attempt >= settings.dependency_max_attempts:
            return DLQ
        return Route("wait", 0, settings.dependency_retry_delay_s)
    if isinstance(error, RetryLaterError):
        n = attempt if transient_failures is None else transient_failures
        if n > tiers:
            return DLQ
        return Route("retry", n, settings.retry_delays_s[n - 1])
    return DLQ


def effective_priority(priority: int, waited_s: float, aging_s: float) -> float:
    """Priority number lowered by one step per `aging_s` waited, so low priority still moves."""
    if aging_s <= 0:
        return float(priority)
    return priority - waited_s / aging_s
