"""Dotted paths into nested source records, compiled once into plain getters.

Syntax: `Name`, `Address.City`, `Phones[0].Number`, `Phones[-1]`,
`Phone[PhoneType=cell].PhoneNumber` (the first list item whose key equals the value,
compared case-insensitively). A path that does not lead anywhere yields None.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Getter = Callable[[object], object]

_SEGMENT = re.compile(r"^([A-Za-z_$][\w$-]*)((?:\[[^\[\]]+\])*)$")
_PICK = re.compile(r"\[([^\[\]]+)\]")


def compile_path(path: str) -> Getter:
    """A getter for `path`; raises ValueError naming what is wrong with the syntax."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"a path must be a non-empty string, not {path!r}")
    steps: list[Getter] = []
    for segment in path.strip().split("."):
        match = _SEGMENT.match(segment)
        if not match:
            raise ValueError(f"bad path segment {segment!r} in {path!r}")
        steps.append(_key(match.group(1)))
        for pick in _PICK.findall(match.group(2)):
            steps.append(_pick(pick, path))
    if len(steps) == 1:
        name = match.group(1)  # type: ignore[union-attr]
        return lambda record: record.get(name) if isinstance(record, dict) else None
    return _chain(steps)


def _key(name: str) -> Getter:
    return lambda value: value.get(name) if isinstance(value, dict) else None


def _pick(pick: str, path: str) -> Getter:
    pick = pick.strip()
    if re.fullmatch(r"-?\d+", pick):
        index = int(pick)

        def by_index(value: object) -> object:
            if isinstance(value, (list, tuple)) and -len(value) <= index < len(value):
                return value[index]
            return None

        return by_index
    if "=" in pick:
        key, wanted = (part.strip() for part in pick.split("=", 1))
        wanted_folded = wanted.casefold()

        def by_match(value: object) -> object:
            if isinstance(value, (list, tuple)):
                for item in value:
                    if isinstance(item, dict) and str(item.get(key, "")).strip().casefold() == wanted_folded:
                        return item
            return None

        return by_match
    raise ValueError(f"bad list pick [{pick}] in {path!r}: use [n] or [Key=Value]")


def _chain(steps: list[Getter]) -> Getter:
    def get(record: object) -> object:
        value = record
        for step in steps:
            value = step(value)
            if value is None:
                return None
        return value

    return get
