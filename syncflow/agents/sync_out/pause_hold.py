"""Which buffered records a sync-out worker holds because their scope is paused
(`syncflow pause --target T [--property P] [--entity-type E]`, agents/pauses.py).

A held record stays in the priority buffer: it is not taken, so it is not tried, retried,
dead-lettered or charged to the rate limit, and its offset stays pending, so nothing is
committed past it (a restarted or rebalanced worker reads it again and holds it again).
Only an entity's oldest record is ever taken, so holding it holds the entity's later
versions too; on resume they go out in version order. Other entities keep flowing: held
records do not count against the window (`buffer_max`); beyond `ops.pause_hold_max` held
records the worker stops fetching until the pause is lifted (memory is bounded)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from syncflow.agents.pauses import PauseRules, PropertyResolver

if TYPE_CHECKING:
    from syncflow.agents.sync_out.batch import Consumed
    from syncflow.agents.sync_out.priority import PriorityBuffer

log = logging.getLogger(__name__)


class PauseHold:
    def __init__(self, rules: PauseRules | None = None, resolver: PropertyResolver | None = None, hold_max: int = 20_000):
        self.rules, self.resolver, self.hold_max = rules, resolver, hold_max
        self.entities: set[str] = set()  # buffer entities whose next record is held
        self.count = 0  # records buffered for them

    @property
    def scopes(self) -> int:
        return len(self.rules.scopes) if self.rules is not None else 0

    async def update(self, buffer: "PriorityBuffer[Consumed]") -> None:
        """Refresh the rules when due, then decide which entities of the buffer are held."""
        rules = self.rules
        if rules is None:
            return
        if rules.due():
            await asyncio.to_thread(rules.refresh)
        if not rules.active:
            self.entities, self.count = set(), 0
            return
        heads = [h for h in buffer.heads() if h.item.event is not None]
        events = [h.item.event for h in heads]
        props: list[str | None] = [None] * len(heads)
        unknown_held = False
        if rules.by_property and self.resolver is not None and heads:
            try:
                props = await asyncio.to_thread(
                    self.resolver.resolve, [(e.entity_type, e.snapshot, e.references) for e in events])  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - hold what a property pause might cover until it can be told
                log.warning("sync-out: properties not resolved (%s: %s); holding what a property pause may cover",
                            type(exc).__name__, exc)
                unknown_held = True
        held = set()
        for head, event, prop in zip(heads, events, props):
            assert event is not None
            if rules.holds(event.entity_type, prop) or (
                    unknown_held and any(not s.entity_type or s.entity_type == event.entity_type for s in rules.scopes)):
                held.add(head.entity)
        self.entities, self.count = held, buffer.count_of(held)
