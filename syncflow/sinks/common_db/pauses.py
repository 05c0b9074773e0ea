"""The common database's `pauses` table (migration 0006): operator pauses of a target
(sync-out) or a source (sync-in), whole or narrowed to one property and/or entity type;
written by `syncflow pause` / `syncflow resume`, read by the workers' PauseRules
(agents/pauses.py). And the lookups of a record's property a pause by property needs."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

SIDES = ("sync-in", "sync-out")


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def norm_property(value: object) -> str:
    return "" if value is None else str(value).strip().upper()


@dataclass(frozen=True)
class PauseScope:
    side: str  # sync-in | sync-out
    system: str  # source or target
    prop: str = ""  # the property code; "" = every property
    entity_type: str = ""  # "" = every entity type
    reason: str = ""
    paused_by: str = ""
    since: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.side, self.system, self.prop, self.entity_type)

    def covers(self, entity_type: str, prop: str | None) -> bool:
        return (not self.entity_type or self.entity_type == entity_type) and (not self.prop or self.prop == (prop or ""))

    def describe(self) -> str:
        parts = [f"{self.side} {self.system}"]
        parts += [f"property {self.prop}"] if self.prop else []
        parts += [f"entity type {self.entity_type}"] if self.entity_type else []
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["property"] = d.pop("prop")
        d["since"] = self.since.isoformat() if self.since else None
        return d


_COLUMNS = "side, system, property, entity_type, reason, paused_by, since"


def pause(engine: Engine, side: str, system: str, *, prop: str | None = None, entity_type: str | None = None,
          reason: str = "", by: str | None = None) -> tuple[PauseScope, bool]:
    """Pause a scope; returns it and whether it is new (an existing pause keeps its `since`
    and takes the new reason)."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}")
    params = {"side": side, "system": system, "property": norm_property(prop), "entity_type": entity_type or "",
              "reason": reason, "paused_by": by or default_actor()}
    query = text(
        f"INSERT INTO pauses ({_COLUMNS}) VALUES (:side, :system, :property, :entity_type, :reason, :paused_by, now()) "
        "ON CONFLICT (side, system, property, entity_type) DO UPDATE SET reason = excluded.reason "
        f"RETURNING {_COLUMNS}, (xmax = 0) AS inserted"
    )
    with engine.begin() as conn:
        row = conn.execute(query, params).one()
    return PauseScope(*row[:7]), bool(row[7])


def resume(engine: Engine, side: str, system: str, *, prop: str | None = None, entity_type: str | None = None) -> PauseScope | None:
    """Lift exactly this scope (a pause of the whole target is not lifted by resuming one
    property of it); the scope removed, or None when it was not paused."""
    query = text(
        "DELETE FROM pauses WHERE side = :side AND system = :system AND property = :property "
        f"AND entity_type = :entity_type RETURNING {_COLUMNS}"
    )
    with engine.begin() as conn:
        row = conn.execute(query, {"side": side, "system": system, "property": norm_property(prop),
                                   "entity_type": entity_type or ""}).one_or_none()
    return PauseScope(*row) if row else None


def list_pauses(engine: Engine, side: str | None = None, system: str | None = None) -> list[PauseScope]:
    query = text(
        f"SELECT {_COLUMNS} FROM pauses WHERE (CAST(:side AS text) IS NULL OR side = :side) "
        "AND (CAST(:system AS text) IS NULL OR system = :system) ORDER BY side, system, property, entity_type"
    )
    with engine.connect() as conn:
        return [PauseScope(*row) for row in conn.execute(query, {"side": side, "system": system})]


# -- a record's property, from the tables -------------------------------------------------------
_LOCATIONS = text(
    "SELECT l.entity_id, l.property_code FROM locations l WHERE l.entity_id = ANY(:ids)"
)
_SERVICE_REQUESTS = text(
    "SELECT s.entity_id, l.property_code FROM service_requests s JOIN locations l ON l.entity_id = s.location_id "
    "WHERE s.entity_id = ANY(:ids)"
)


def location_properties(conn: Connection, ids: Iterable[str]) -> list[tuple[str, str | None]]:
    """(location id, its property_code) of the locations among `ids`."""
    return [(i, p) for i, p in conn.execute(_LOCATIONS, {"ids": list(ids)})]


def service_request_properties(conn: Connection, ids: Iterable[str]) -> list[tuple[str, str | None]]:
    """(service request id, the property_code of its location) of the service requests among `ids`."""
    return [(i, p) for i, p in conn.execute(_SERVICE_REQUESTS, {"ids": list(ids)})]
