"""One generated world of properties, units, residents, service requests and attachments.

Every source emulator serves its slice of the same world, so the demo and the checker can
follow one real unit across systems (a Lessen360 work order for a Yardi unit). The world
is deterministic from (seed, volume, invalid_rate); changes are deterministic too, from the
order in which they are asked for. Entities are kept in a neutral shape; `render.py` turns
them into each source's native records."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the world's "now" before any change
DAY_MS = 86_400_000

LOCATION_OWNERS = ("yardi", "realpage", "insight")  # sources that own properties
UNIT_REFERENCING = ("yardi", "realpage")  # Lessen360 work orders name units of these

CITIES = [
    ("Austin", "TX", "78701", "America/Chicago"),
    ("Denver", "CO", "80202", "America/Denver"),
    ("Phoenix", "AZ", "85004", "America/Phoenix"),
    ("Atlanta", "GA", "30303", "America/New_York"),
    ("Seattle", "WA", "98101", "America/Los_Angeles"),
    ("Chicago", "IL", "60601", "America/Chicago"),
    ("Charlotte", "NC", "28202", "America/New_York"),
    ("Portland", "OR", "97204", "America/Los_Angeles"),
]
PROPERTY_NAMES = ["Maple", "Cedar", "Willow", "Harbor", "Summit", "Aspen", "Riverbend", "Oakridge",
                  "Lakeside", "Juniper", "Magnolia", "Stonegate", "Bluffs", "Meadow", "Canyon", "Prairie"]
STREETS = ["Main St", "Oak Ave", "Pine St", "Elm Dr", "Lake Blvd", "Hill Rd", "Park Ln", "Cherry Way"]
FIRST_NAMES = ["Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jamal",
               "Kira", "Luis", "Maya", "Noah", "Olivia", "Priya", "Quinn", "Rosa", "Sam", "Tariq"]
LAST_NAMES = ["Garcia", "Smith", "Nguyen", "Johnson", "Patel", "Kim", "Brown", "Lopez", "Okafor",
              "Miller", "Davis", "Chen", "Wilson", "Martinez", "Taylor", "Singh"]
CATEGORIES = {  # neutral category -> sub-categories
    "plumbing": ["Leaking Faucet", "Clogged Drain", "Running Toilet", "No Hot Water"],
    "electrical": ["Outlet Not Working", "Light Fixture", "Breaker Tripping"],
    "hvac": ["No Heat", "No Cooling", "Thermostat"],
    "appliance": ["Dishwasher", "Refrigerator", "Oven", "Washer"],
    "general": ["Door Sticks", "Drywall Repair", "Window Screen"],
    "pest": ["Ants", "Roaches", "Rodents"],
    "locks": ["Lockout", "Rekey", "Broken Lock"],
    "exterior": ["Gutter", "Sprinkler", "Parking Lot Light"],
}
SR_STATUSES = ["open", "scheduled", "in_progress", "on_hold", "completed", "cancelled"]
NEXT_STATUS = {"open": "scheduled", "scheduled": "in_progress", "in_progress": "completed",
               "on_hold": "in_progress", "completed": "completed", "cancelled": "cancelled"}
DESCRIPTIONS = ["Water under the kitchen sink", "Noise from the unit upstairs vent", "Stopped working last night",
                "Intermittent problem since Monday", "Please call before coming", "Tenant reports a burning smell"]
INVALID_KINDS = ("bad_email", "missing_required", "unknown_category", "malformed_date")


@dataclass
class Entity:
    """One record of one source. `data` is neutral; `invalid` names the business rule a
    rendered record breaks (ground truth for the checker), or None."""

    source: str
    entity_type: str
    source_id: str
    data: dict[str, Any]
    modified_ms: int
    deleted: bool = False
    invalid: str | None = None


@dataclass
class World:
    seed: int
    volume: int
    invalid_rate: float
    clock_ms: int = BASE_TIME_MS
    entities: dict[tuple[str, str, str], Entity] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    counters: dict[str, int] = field(default_factory=dict)
    changes_applied: int = 0
    # Every record that was ever served invalid: the checker's ground truth for the DLQ.
    invalid_ever: set[tuple[str, str, str]] = field(default_factory=set)
    # The entities again by source and by (source, entity type), in the order they were
    # added: every API request reads one such slice, and scanning the whole world for it
    # made a page cost as much as the world is big.
    _by_source: dict[str, list[Entity]] = field(default_factory=dict, repr=False)
    _by_kind: dict[tuple[str, str], list[Entity]] = field(default_factory=dict, repr=False)

    def of(self, source: str, entity_type: str | None = None) -> list[Entity]:
        """A source's entities (deleted ones included), in the order they were added."""
        if entity_type is None:
            return list(self._by_source.get(source, ()))
        return list(self._by_kind.get((source, entity_type), ()))

    def get(self, source: str, entity_type: str, source_id: str) -> Entity | None:
        return self.entities.get((source, entity_type, source_id))

    def properties(self, source: str) -> list[Entity]:
        return [e for e in self.of(source, "location") if e.data["kind"] == "property"]

    def tick(self) -> int:
        """Move the world's clock forward by whole seconds and return it."""
        self.clock_ms += self.rng.randint(1, 5) * 1000
        return self.clock_ms

    def next_number(self, name: str, start: int) -> int:
        self.counters[name] = self.counters.get(name, start - 1) + 1
        return self.counters[name]

    def add(self, entity: Entity) -> Entity:
        """Add an entity (one with the key of an existing one takes its place)."""
        key = (entity.source, entity.entity_type, entity.source_id)
        replaced = self.entities.get(key)
        self.entities[key] = entity
        for entities in (self._by_source.setdefault(entity.source, []),
                         self._by_kind.setdefault((entity.source, entity.entity_type), [])):
            if replaced is None:
                entities.append(entity)
            else:
                entities[next(i for i, e in enumerate(entities) if e is replaced)] = entity
        self.note_invalid(entity)
        return entity

    def note_invalid(self, entity: Entity) -> None:
        if entity.invalid:
            self.invalid_ever.add((entity.source, entity.entity_type, entity.source_id))


def generate_world(seed: int = 42, volume: int = 200, invalid_rate: float = 0.0) -> World:
    """A world of about `volume` units spread over properties owned by Yardi, RealPage and
    Insight, with residents, service requests (Lessen360 work orders for Yardi/RealPage
    units) and attachments."""
    world = World(seed=seed, volume=volume, invalid_rate=invalid_rate, rng=random.Random(seed))
    rng = world.rng
    n_properties = max(len(LOCATION_OWNERS), math.ceil(volume / 8))
    units_left = max(volume, n_properties)
    for p in range(n_properties):
        owner = LOCATION_OWNERS[p % len(LOCATION_OWNERS)]
        n_units = math.ceil(units_left / (n_properties - p))
        units_left -= n_units
        prop = _add_property(world, owner, p)
        for u in range(n_units):
            unit = _add_unit(world, prop, u)
            if rng.random() < 0.85:
                resident = _add_resident(world, unit)
            else:
                resident = None
            for _ in range(rng.choice([0, 0, 1, 1, 2])):
                _add_service_request(world, owner, unit, resident)
            if owner in UNIT_REFERENCING and rng.random() < 0.4:
                _add_service_request(world, "lessen360", unit, resident)
    return world


def _past_ms(rng: random.Random, days: int = 30) -> int:
    return BASE_TIME_MS - rng.randint(1, days * 86_400) * 1000


def _maybe_invalid(world: World, kinds: tuple[str, ...]) -> str | None:
    if kinds and world.invalid_rate > 0 and world.rng.random() < world.invalid_rate:
        return world.rng.choice(kinds)
    return None


# Which invalid kinds each (source, entity type) can show; see docs/sources.md.
INVALID_CHOICES: dict[str, tuple[str, ...]] = {
    "location": ("missing_required",),
    "resident": ("bad_email", "missing_required", "malformed_date"),
    "service_request": ("bad_email", "missing_required", "unknown_category", "malformed_date"),
    "attachment": ("missing_required",),
}


def invalid_choices(source: str, entity_type: str) -> tuple[str, ...]:
    kinds = INVALID_CHOICES[entity_type]
    if source == "lessen360":  # epoch-millisecond times cannot be malformed strings
        kinds = tuple(k for k in kinds if k != "malformed_date")
    return kinds


def _source_id(world: World, source: str, entity_type: str, **kw: str) -> str:
    """Ids in each source's own style."""
    rng = world.rng
    if entity_type == "location":
        if source == "yardi":
            return kw["property_code"] if not kw.get("unit_code") else f"{kw['property_code']}-{kw['unit_code']}"
        if source == "realpage":
            prefix = "U" if kw.get("unit_code") else "P"
            return f"{prefix}{world.next_number('rp-loc', 1001)}"
        return f"loc_{rng.getrandbits(48):012x}"
    if entity_type == "resident":
        return {"yardi": lambda: f"t{world.next_number('yd-res', 1000001):07d}",
                "realpage": lambda: f"R{world.next_number('rp-res', 500001)}",
                "insight": lambda: f"occ_{rng.getrandbits(48):012x}"}[source]()
    if entity_type == "service_request":
        return {"yardi": lambda: str(world.next_number("yd-sr", 40001)),
                "realpage": lambda: f"WO{world.next_number('rp-wo', 700001)}",
                "insight": lambda: f"tkt_{rng.getrandbits(48):012x}",
                "lessen360": lambda: f"WO-{world.next_number('ls-wo', 100001):06d}"}[source]()
    return {"realpage": lambda: f"ATT{world.next_number('rp-att', 900001)}",
            "lessen360": lambda: f"att_{rng.getrandbits(48):012x}"}[source]()


def _add_property(world: World, owner: str, index: int) -> Entity:
    rng = world.rng
    name = PROPERTY_NAMES[index % len(PROPERTY_NAMES)]
    city, state, zip_code, tz = CITIES[index % len(CITIES)]
    code = f"{name[:4].lower()}{index + 1:02d}"
    data = {"kind": "property", "property_code": code, "unit_code": None,
            "name": f"{name} {rng.choice(['Apartments', 'Commons', 'Residences', 'Place'])}",
            "street": f"{rng.randint(100, 9999)} {rng.choice(STREETS)}", "city": city, "state": state,
            "postal_code": zip_code, "time_zone": tz}
    sid = _source_id(world, owner, "location", property_code=code)
    return world.add(Entity(owner, "location", sid, data, _past_ms(rng),
                            invalid=_maybe_invalid(world, invalid_choices(owner, "location"))))


def _add_unit(world: World, prop: Entity, index: int) -> Entity:
    rng = world.rng
    floor = 1 + index // 10
    unit_code = f"{floor}{index % 10 + 1:02d}"
    bedrooms = rng.choice([0, 1, 1, 2, 2, 3])
    data = dict(prop.data, kind="unit", unit_code=unit_code, bedrooms=bedrooms,
                bathrooms=rng.choice([1.0, 1.0, 1.5, 2.0, 2.5]), square_feet=450 + bedrooms * 300 + rng.randint(0, 150),
                market_rent=f"{900 + bedrooms * 350 + rng.randint(0, 40) * 5}.00",
                occupancy=rng.choice(["occupied", "occupied", "occupied", "vacant", "notice"]))
    sid = _source_id(world, prop.source, "location", property_code=prop.data["property_code"], unit_code=unit_code)
    return world.add(Entity(prop.source, "location", sid, data, _past_ms(world.rng),
                            invalid=_maybe_invalid(world, invalid_choices(prop.source, "location"))))


def _phone(rng: random.Random) -> str:
    return f"+1{rng.choice(['512', '303', '602', '404', '206'])}555{rng.randint(0, 9999):04d}"


def _add_resident(world: World, unit: Entity) -> Entity:
    rng = world.rng
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    move_in = BASE_TIME_MS - rng.randint(30, 900) * DAY_MS
    status = rng.choice(["current", "current", "current", "notice", "future", "past"])
    data = {"property_code": unit.data["property_code"], "unit_code": unit.data["unit_code"],
            "time_zone": unit.data["time_zone"], "unit_source_id": unit.source_id,
            "first_name": first, "last_name": last,
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com", "phone": _phone(rng),
            "status": status, "move_in_ms": move_in,
            "move_out_ms": move_in + 365 * DAY_MS if status in ("past", "notice") else None}
    sid = _source_id(world, unit.source, "resident")
    return world.add(Entity(unit.source, "resident", sid, data, _past_ms(rng),
                            invalid=_maybe_invalid(world, invalid_choices(unit.source, "resident"))))


def _add_service_request(world: World, source: str, unit: Entity, resident: Entity | None,
                         modified_ms: int | None = None) -> Entity:
    rng = world.rng
    category = rng.choice(list(CATEGORIES))
    requested = modified_ms - rng.randint(0, 3600) * 1000 if modified_ms else _past_ms(rng, 60)
    status = rng.choice(SR_STATUSES[:5]) if modified_ms is None else "open"
    priority = rng.choice([1, 2, 3, 3, 3, 4, 4])  # 1 emergency, 2 high, 3 normal, 4 low
    history = [("open", requested)]
    if status != "open":
        history.append((status, requested + rng.randint(1, 48) * 3600_000))
    res = resident.data if resident and not resident.deleted else None
    data = {"property_code": unit.data["property_code"], "unit_code": unit.data["unit_code"],
            "time_zone": unit.data["time_zone"],
            "resident_source_id": resident.source_id if resident and resident.source == source else None,
            "category": category, "subcategory": rng.choice(CATEGORIES[category]), "priority": priority,
            "status": status, "history": history, "description": rng.choice(DESCRIPTIONS),
            "requestor_name": f"{res['first_name']} {res['last_name']}" if res else "Property Staff",
            "requestor_phone": res["phone"] if res else None,
            "requestor_email": res["email"] if res else None,
            "permission_to_enter": rng.random() < 0.6,
            "access_notes": rng.choice([None, "Dog in unit", "Call first", "Key at office"]),
            "requested_ms": requested,
            "completed_ms": history[-1][1] if status == "completed" else None}
    sid = _source_id(world, source, "service_request")
    sr = world.add(Entity(source, "service_request", sid, data, modified_ms or max(_past_ms(rng), requested),
                          invalid=_maybe_invalid(world, invalid_choices(source, "service_request"))))
    if source in ("realpage", "lessen360") and rng.random() < 0.5:
        _add_attachment(world, sr, modified_ms)
    return sr


def _add_attachment(world: World, sr: Entity, modified_ms: int | None = None) -> Entity:
    rng = world.rng
    n = rng.randint(1, 9999)
    kind = rng.choice([("jpg", "image/jpeg"), ("png", "image/png"), ("pdf", "application/pdf")])
    sid = _source_id(world, sr.source, "attachment")
    data = {"service_request_source_id": sr.source_id, "property_code": sr.data["property_code"],
            "time_zone": sr.data["time_zone"], "file_name": f"photo_{n:04d}.{kind[0]}", "content_type": kind[1],
            "size_bytes": rng.randint(20_000, 4_000_000),
            "url": f"https://files.{sr.source}.example.com/{sr.source_id}/{sid}.{kind[0]}",
            "uploaded_ms": modified_ms or sr.modified_ms}
    return world.add(Entity(sr.source, "attachment", sid, data, modified_ms or sr.modified_ms,
                            invalid=_maybe_invalid(world, invalid_choices(sr.source, "attachment"))))


def apply_changes(world: World, source: str, count: int) -> list[Entity]:
    """Apply `count` changes to one source's slice: mostly updates, some deletes, some new
    service requests. Each moves the world clock forward and becomes the record's modified
    time. Returns the changed entities."""
    changed: list[Entity] = []
    rng = world.rng
    live = [e for e in world.of(source) if not e.deleted]
    owners = UNIT_REFERENCING if source == "lessen360" else (source,)
    units = [e for o in owners for e in world.of(o, "location") if e.data["kind"] == "unit"]
    residents: dict[str, list[Entity]] = {}
    for r in (r for o in owners for r in world.of(o, "resident")):
        residents.setdefault(r.data["unit_source_id"], []).append(r)
    for _ in range(count):
        roll = rng.random()
        now = world.tick()
        if roll < 0.15 or not live:
            before = len(world.entities)
            entity = _create_for(world, source, now, units, residents)
            if entity is None:
                continue
            live += list(world.entities.values())[before:]  # the request and any attachment
        else:
            entity = rng.choice(live)
            deletable = not (entity.entity_type == "location" and entity.data["kind"] == "property")
            if roll < 0.27 and deletable:
                entity.deleted = True
                live.remove(entity)
            else:
                _update(world, entity)
                entity.invalid = _maybe_invalid(world, invalid_choices(source, entity.entity_type))
                world.note_invalid(entity)
            entity.modified_ms = now
        changed.append(entity)
        world.changes_applied += 1
    return changed


def _create_for(world: World, source: str, now: int, units: list[Entity],
                residents: dict[str, list[Entity]]) -> Entity | None:
    """A new service request on one of the units this source knows about."""
    open_units = [u for u in units if not u.deleted]
    if not open_units:
        return None
    unit = world.rng.choice(open_units)
    living = [r for r in residents.get(unit.source_id, []) if not r.deleted]
    return _add_service_request(world, source, unit, living[0] if living else None, modified_ms=now)


def _update(world: World, entity: Entity) -> None:
    rng, d = world.rng, entity.data
    if entity.entity_type == "location":
        if d["kind"] == "property":
            d["name"] = d["name"].split(" (")[0] + f" ({rng.choice(['Phase I', 'Phase II', 'East', 'West'])})"
        else:
            d["market_rent"] = f"{int(float(d['market_rent'])) + rng.choice([-25, 25, 50])}.00"
            d["occupancy"] = rng.choice(["occupied", "vacant", "notice"])
    elif entity.entity_type == "resident":
        d["phone"] = _phone(rng)
        d["status"] = rng.choice(["current", "notice"])
    elif entity.entity_type == "service_request":
        d["status"] = NEXT_STATUS[d["status"]] if rng.random() < 0.8 else "on_hold"
        d["history"] = d["history"] + [(d["status"], world.clock_ms)]
        if d["status"] == "completed" and d["completed_ms"] is None:
            d["completed_ms"] = world.clock_ms
        d["description"] = rng.choice(DESCRIPTIONS)
    else:
        d["file_name"] = "renamed_" + d["file_name"].removeprefix("renamed_")
