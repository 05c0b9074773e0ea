"""Several runs of one benchmark job into one figure each: the median and the spread (lowest
and highest run) of the value, of the baseline and of the ratio. The ratio is computed in
each run (figure and baseline measured at the same moment) and then its median taken, not
the median figure divided by the median baseline. Pure: no services, no I/O."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.figures import BenchResult, Figure


@dataclass(frozen=True)
class Spread:
    """The median of some runs' values and the lowest and highest of them."""

    median: float
    low: float
    high: float
    runs: int  # how many runs had a value

    @classmethod
    def of(cls, values: list[float | None]) -> "Spread | None":
        """None when no run measured it (NaN and None are not measurements)."""
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return None
        return cls(statistics.median(finite), min(finite), max(finite), len(finite))


@dataclass(frozen=True)
class Summary:
    """One figure of a job over its runs."""

    job: str
    name: str
    unit: str
    value: Spread | None
    baseline_name: str | None = None
    baseline_unit: str | None = None
    baseline: Spread | None = None
    ratio: Spread | None = None
    runs: int = 0  # runs of the job that produced a result


@dataclass
class JobRuns:
    """The results of every run of one job (a benchmark script with one set of flags)."""

    job: str
    results: list[BenchResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def params(self) -> dict[str, Any]:
        """The first run's parameters (sizes are the same in every run of a job)."""
        return self.results[0].params if self.results else {}

    def param_values(self, key: str) -> list[Any]:
        return [r.params[key] for r in self.results if key in r.params]


def summarize(job: JobRuns) -> list[Summary]:
    """One Summary per figure name, in the order the figures first appear. A name that
    appears more than once in a run (the same figure against several baselines) is matched
    by its place among those of that name."""
    order: list[tuple[str, int]] = []
    by_key: dict[tuple[str, int], list[Figure]] = {}
    for result in job.results:
        seen: Counter[str] = Counter()
        for figure in result.figures:
            key = (figure.name, seen[figure.name])
            seen[figure.name] += 1
            if key not in by_key:
                order.append(key)
                by_key[key] = []
            by_key[key].append(figure)
    return [_summary(job.job, by_key[key], len(job.results)) for key in order]


def _summary(job: str, figures: list[Figure], runs: int) -> Summary:
    first = figures[0]
    baselines = [f.baseline for f in figures if f.baseline is not None]
    if not baselines:
        return Summary(job, first.name, first.unit, Spread.of([f.value for f in figures]), runs=runs)
    # The baseline's name may carry a run's own detail (which part was slowest): the most common one.
    name = Counter(b.name for b in baselines).most_common(1)[0][0]
    return Summary(job, first.name, first.unit, Spread.of([f.value for f in figures]),
                   name, baselines[0].unit, Spread.of([b.value for b in baselines]),
                   Spread.of([f.ratio for f in figures]), runs)


def find(summaries: list[Summary], name: str) -> Summary | None:
    """The summary of the figure called exactly `name`, or None."""
    return next((s for s in summaries if s.name == name), None)


def find_prefix(summaries: list[Summary], prefix: str) -> list[Summary]:
    return [s for s in summaries if s.name.startswith(prefix)]
