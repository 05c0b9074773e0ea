"""The engine's output: one canonical entity plus what sync-in needs to route and store it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CanonicalRecord:
    """A source record after the rules: shaped exactly like its canonical Avro schema."""

    entity_type: str  # location | resident | service_request | attachment
    entity_id: str  # canonical id, see docs/rules.md "Identity"
    entity: dict  # canonical fields, python types (aware UTC datetime, date, Decimal, None)
    priority: int = 5  # 1 (highest) .. 10
    references: dict[str, str] = field(default_factory=dict)  # entity type -> canonical id
    deleted: bool = False  # the source signalled a delete
