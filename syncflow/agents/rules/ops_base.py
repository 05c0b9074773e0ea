"""What every rule type shares: the per-record state a compiled rule works on, the
context it is compiled in, and small helpers for checking a rule's arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone
from zoneinfo import ZoneInfo

from syncflow.agents.rules.identity import IdentityRule
from syncflow.agents.rules.values import RuleFailure


class RecordState:
    """What the rules of one record share: its source, the native record, the working
    values (canonical and `_scratch` fields), the references found, its time zone."""

    __slots__ = ("source", "native", "values", "references", "timezone")

    def __init__(self, source: str, native: dict, timezone_: ZoneInfo | timezone):
        self.source = source
        self.native = native
        self.values: dict[str, object] = {}
        self.references: dict[str, str] = {}
        self.timezone = timezone_


Op = Callable[[object, RecordState], object]


@dataclass(frozen=True)
class BuildContext:
    """What a rule type may consult while compiling its arguments."""

    identities: dict[str, IdentityRule]
    check_field: Callable[[str], None]  # raises ValueError for a field no rule may name


@dataclass(frozen=True)
class RuleType:
    build: Callable[[object, BuildContext], Op]
    takes_none: bool  # run even when the value is None (otherwise None passes untouched)
    summary: str


# -- helpers ----------------------------------------------------------------------------
def strings(args: object, what: str) -> tuple[str, ...]:
    items = args if isinstance(args, list) else [args]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise ValueError(f"{what} must be a string or a list of strings, not {args!r}")
    return tuple(items)


def no_args(name: str) -> Callable[[object], None]:
    def check(args: object) -> None:
        if args not in (None, True):
            raise ValueError(f"'{name}' takes no arguments (write it as '{name}' or '{name}: true')")
    return check


def simple(name: str, func: Callable[[object], object]) -> Callable[[object, BuildContext], Op]:
    def build(args: object, ctx: BuildContext) -> Op:
        no_args(name)(args)

        def op(value: object, state: RecordState, func: Callable[[object], object] = func) -> object:
            return func(value)
        return op
    return build



def as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def check(test: Callable[[object], bool], reason: str) -> Op:
    """A validation op: the value passes unchanged or fails with `reason`."""
    def op(value: object, state: RecordState) -> object:
        if not test(value):
            raise RuleFailure(reason)
        return value
    return op
