"""The one format every benchmark script writes with `--json PATH` and bench/report.py reads:

    {"bench": "sync-out", "params": {...},
     "figures": [{"name": str, "value": float, "unit": str,
                  "baseline": {"name": str, "value": float, "unit": str} | null}]}

A figure carries the baseline measured in the same run (bare consume, bare bulk upsert,
bare HTTP calls), so a reader sees how far the pipeline is from what the machine can do
at that moment rather than comparing against numbers from another, differently loaded, day.
Kept free of syncflow imports so any bench script (and the unit tests) can use it."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Baseline:
    """What the same work costs without the pipeline around it."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: Baseline | None = None

    @property
    def ratio(self) -> float | None:
        """value / baseline value, or None when there is nothing meaningful to divide by."""
        if self.baseline is None or not _finite(self.value) or not _finite(self.baseline.value) or self.baseline.value == 0:
            return None
        return self.value / self.baseline.value

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"] = _json_number(self.value)
        if self.baseline is not None:
            d["baseline"]["value"] = _json_number(self.baseline.value)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Figure":
        b = d.get("baseline")
        baseline = Baseline(str(b["name"]), _float(b["value"]), str(b["unit"])) if b else None
        return cls(str(d["name"]), _float(d["value"]), str(d["unit"]), baseline)


@dataclass
class BenchResult:
    """One bench script's output."""

    bench: str
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"bench": self.bench, "params": self.params, "figures": [f.to_dict() for f in self.figures]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchResult":
        return cls(str(d["bench"]), dict(d.get("params") or {}), [Figure.from_dict(f) for f in d.get("figures") or []])


def write_json(path: str | Path, result: BenchResult) -> None:
    """Write atomically enough for a parent process that reads it after we exit."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    tmp.replace(p)


def read_json(path: str | Path) -> BenchResult:
    return BenchResult.from_dict(json.loads(Path(path).read_text()))


def format_value(value: float, unit: str) -> str:
    """A figure as a person reads it: thousands separators, few digits, the unit after."""
    if not _finite(value):
        return f"n/a {unit}".strip()
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.2f}"
    return f"{text} {unit}".strip()


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "–"
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 10:
        return f"{ratio:.1f}×"
    if ratio >= 0.1 or ratio <= 0:
        return f"{ratio:.2f}×"
    # Two significant digits: a pipeline at a thousandth of its baseline must not read "0.00×".
    return f"{ratio:.{1 - math.floor(math.log10(ratio))}f}×"


def markdown_rows(figures: list[Figure], prefix: str = "") -> list[str]:
    """Rows of | figure | value | baseline | ratio |, one per figure."""
    rows = []
    for f in figures:
        base = f"{format_value(f.baseline.value, f.baseline.unit)} ({f.baseline.name})" if f.baseline else "–"
        rows.append(f"| {prefix}{_cell(f.name)} | {format_value(f.value, f.unit)} | {_cell(base)} | {format_ratio(f.ratio)} |")
    return rows


def print_table(result: BenchResult, file: Any = None) -> None:
    """The script's own Markdown table on stdout, in the report's columns."""
    out = file or sys.stdout
    print("| figure | value | baseline | ratio |", file=out)
    print("|---|---|---|---|", file=out)
    for row in markdown_rows(result.figures):
        print(row, file=out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _json_number(x: float) -> float | None:
    """JSON has no NaN; a missing measurement is written as null."""
    return float(x) if _finite(x) else None


def _float(x: Any) -> float:
    return float("nan") if x is None else float(x)
