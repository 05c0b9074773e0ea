"""Identity rules: how a canonical id is derived, so the same real thing gets one id.

An id is `<prefix>` + uuid5(namespace, "<entity_type>|<part>|<part>…"). The parts come from
the rules file's `identity` section: the record's source system (`source_system`) and/or
fields of the working record, trimmed and, where the rules say so, upper-cased.
Locations use (property_code, unit_code) only, so every source reporting the same unit
lands on one canonical location; the other entities include the source system.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

SOURCE_PART = "source_system"


@dataclass(frozen=True)
class IdentityRule:
    entity_type: str
    prefix: str
    parts: tuple[str, ...]  # field names; SOURCE_PART stands for the record's source
    upper: bool
    namespace: uuid.UUID

    @property
    def field_parts(self) -> tuple[str, ...]:
        """The parts a caller supplies (everything but the source system)."""
        return tuple(p for p in self.parts if p != SOURCE_PART)

    def make_id(self, source: str, values: list[object]) -> str | None:
        """The canonical id from the field parts in order; None when the first is missing.

        Later missing parts count as empty (a property is a location without a unit code).
        """
        texts = []
        for value in values:
            text = "" if value is None else str(value).strip()
            texts.append(text.upper() if self.upper else text)
        texts += [""] * (len(self.field_parts) - len(texts))
        if not texts or not texts[0]:
            return None
        parts = iter(texts)
        name = "|".join([self.entity_type] + [source if p == SOURCE_PART else next(parts) for p in self.parts])
        return self.prefix + uuid5_text(self.namespace.bytes, name)


def uuid5_text(namespace: bytes, name: str) -> str:
    """str(uuid.uuid5(UUID(bytes=namespace), name)), without building UUID objects (hot path)."""
    digest = bytearray(hashlib.sha1(namespace + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
