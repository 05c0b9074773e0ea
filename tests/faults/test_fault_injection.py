"""The whole pipeline under faults, as CI runs it: sync-in workers SIGKILLed twice, a
sync-out worker SIGKILLed, Kafka, PostgreSQL and the MongoDB server each restarted, and the
targets answering 5xx/timeouts for a stretch and 429 for another. The reconciliation then
proves from the sources' ground truth and the targets' own records that every valid record
is the current version of its entity with gap-free versions, that each target holds every
entity at its latest version with each (entity, version) applied once, that the DLQs hold
exactly the invalid inputs, and that nothing was lost or duplicated.

`make soak` (`pytest tests/faults --soak`) runs the same test on the soak plan: a world and a day of
changes of more than 50,000 raw records, the whole fault schedule (poison records included)
applied SOAK_FAULT_ROUNDS times, and the run's figures written to bench/SOAK.md."""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from syncflow.connectors.schemas import schema_name
from syncflow.demo.demo import DemoPlan, drop_state, post_json, run_demo
from syncflow.ops.status import consumer_groups, lag_by_group
from syncflow.streams.admin import admin_client
from syncflow.demo.namespace import Namespace, free_ports
from syncflow.streams.headers import INJECTED
from syncflow.demo.supervisor import Supervisor
from syncflow.streams.avro import codec_for
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import REPO_ROOT, Settings
from syncflow.streams.topics import raw_topic
from tests.integration.agents.test_poison import poison_cases, valid_pool

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]  # --soak: conftest.py

STACK = REPO_ROOT / "deploy" / "local" / "stack.sh"
SOAK_REPORT = REPO_ROOT / "bench" / "SOAK.md"
SOAK_MIN_RAW_RECORDS = 50_000
SOAK_FAULT_ROUNDS = 2  # the whole schedule, this many times
SOAK_ROUND_S = 150  # seconds between the starts of two rounds of the schedule


@dataclass(frozen=True)
class FaultPlan:
    """How big the run is and how often its fault schedule repeats."""

    demo: DemoPlan
    fault_rounds: int
    round_s: float
    min_raw_records: int


CI_PLAN = FaultPlan(DemoPlan(volume=1200, change_rounds=10, changes_per_round=200, round_interval_s=5,
                             retry_delays_s=(2.0, 5.0, 10.0, 20.0, 30.0), dependency_retry_delay_s=5.0,
                             dependency_max_attempts=40, target_error_rate=0.0, timeout_s=1500),
                    fault_rounds=1, round_s=0, min_raw_records=0)
# ~4,000 units ≈ 13,000 records at the start, then 40 rounds of 250 changes at each source and 20
# pushed, 10 s apart (≈ 41,000 more): a sustained day of changes that goes on past the last fault,
# so the pipeline is busy whenever one hits. A change whose reference is still behind in sync-in
# waits for it up to 15 minutes (90 x 10 s): far longer than the largest backlog under faults
# takes to drain, yet over well within the run, so a change whose reference never comes (an
# invalid source record, in sync-in.dlq) is parked with its reason before the run must end.
SOAK_PLAN = FaultPlan(DemoPlan(volume=4_000, change_rounds=40, changes_per_round=250, round_interval_s=10,
                               webhook_changes_per_round=20,
                               retry_delays_s=(2.0, 5.0, 10.0, 20.0, 30.0, 60.0), dependency_retry_delay_s=10.0,
                               dependency_max_attempts=90, target_error_rate=0.0, timeout_s=4800),
                      fault_rounds=SOAK_FAULT_ROUNDS, round_s=SOAK_ROUND_S, min_raw_records=SOAK_MIN_RAW_RECORDS)


class FaultSchedule:
    """Each fault `rounds` times, at its time (seconds since the pipeline started) plus
    `round_s` per round; meanwhile the largest consumer lag seen, sampled every few seconds."""

    LAG_SAMPLE_S = 5.0

    def __init__(self, settings: Settings, rounds: int = 1, round_s: float = 0.0):
        self.settings = settings
        self.done: list[str] = []
        self.injected: dict[str, tuple[str, ...]] = {}  # filled when the bad records are produced
        self.max_lag = 0
        self._next_lag_sample = 0.0
        once = [
            (15, "kill sync-in-1", lambda s: self._kill(s, "sync-in-1")),
            (25, "targets answer 5xx and time out", lambda s: self._target_faults({"error_rate": 0.4, "timeout_rate": 0.05, "hang_s": 12})),
            (40, "targets recover", lambda s: self._target_faults({"error_rate": 0.0, "timeout_rate": 0.0})),
            (35, "inject bad records", lambda s: self._inject_poison()),
            (45, "kill sync-in-2", lambda s: self._kill(s, "sync-in-2")),
            (55, "kill sync-out-one-1", lambda s: self._kill(s, "sync-out-one-1")),
            (65, "restart kafka", lambda s: self._restart("kafka")),
            (80, "targets answer 429", lambda s: self._target_faults({"force_429_s": 12, "retry_after_s": 2})),
            (95, "restart postgres", lambda s: self._restart("postgres")),
            (115, "restart mongo", lambda s: self._restart("mongo")),
        ]
        self.steps = sorted(((at + r * round_s, name, action) for r in range(rounds) for at, name, action in once),
                            key=lambda step: step[0])

    def __call__(self, supervisor: Supervisor, elapsed: float) -> None:
        while self.steps and elapsed >= self.steps[0][0]:
            _, name, action = self.steps.pop(0)
            action(supervisor)
            self.done.append(name)
        if elapsed >= self._next_lag_sample:
            self._next_lag_sample = elapsed + self.LAG_SAMPLE_S
            self._sample_lag()

    def _sample_lag(self) -> None:
        """The sum of every group's lag now (skipped while the broker restarts)."""
        try:
            lags = lag_by_group(admin_client(self.settings), consumer_groups(self.settings))
        except Exception:  # noqa: BLE001 - Kafka restarting: no sample this time
            return
        self.max_lag = max(self.max_lag, sum(g.lag for g in lags))

    @staticmethod
    def _kill(supervisor: Supervisor, role: str) -> None:
        supervisor[role].kill()
        supervisor[role].restart()

    @staticmethod
    def _restart(service: str) -> None:
        subprocess.run([str(STACK), "restart", service], check=True, capture_output=True, timeout=180)

    def _inject_poison(self) -> None:
        """A handful of the poison matrix's records, produced straight to raw.yardi while
        the pipeline runs: each must end in sync-in.dlq with its category."""
        settings = self.settings
        codec = codec_for(settings)
        topic = raw_topic("yardi") + settings.sync_in.topic_suffix

        def encode(source: str, entity_type: str, record: dict) -> bytes:
            return codec.encode(schema_name(source, entity_type), record, topic=topic)

        picked = {"city-101", "nul", "trace-id-101", "event-too-large", "near-limit-invalid", "lone-surrogate",
                  "confluent-unknown-id", "tombstone", "garbage"}
        cases = [c for c in poison_cases(settings, encode, valid_pool()) if c.name in picked]
        ReliableProducer(settings).send_all(
            OutgoingRecord(topic, c.key, c.value, [(INJECTED, c.name.encode()), *c.headers]) for c in cases)
        self.injected.update({c.name: c.categories for c in cases})

    def _target_faults(self, faults: dict) -> None:
        for target in self.settings.sync_out.targets.values():
            post_json(f"{target.base_url.rstrip('/')}/_emulator/faults", faults)


def test_pipeline_loses_and_duplicates_nothing_under_faults(stack: Settings, tmp_path: Path, soak: bool) -> None:
    fault_plan = SOAK_PLAN if soak else CI_PLAN
    plan = fault_plan.demo
    token = uuid.uuid4().hex[:8]
    namespace = Namespace(suffix=f".ft-{token}", database_schema=f"ft_{token}", mongo_database=f"ft-{token}",
                          ports=free_ports())
    schedule = FaultSchedule(namespace.settings(stack), fault_plan.fault_rounds, fault_plan.round_s)
    console = Console(width=120, force_terminal=False)
    started = time.monotonic()
    try:
        result = run_demo(stack, plan, tmp_path / "logs", namespace=namespace, strict=True, console=console,
                          on_tick=schedule, injected=schedule.injected)
        seconds = time.monotonic() - started
    finally:
        subprocess.run([str(STACK), "up"], capture_output=True, timeout=300)
        drop_state(namespace.settings(stack), namespace)
    print("faults applied: " + ", ".join(schedule.done))
    for name, count in result.counts.items():
        print(f"{name}: {count}")
    if soak:
        write_soak_report(fault_plan, schedule, result.counts, seconds, result.problems)
    assert not schedule.steps, f"faults not applied: {[s[1] for s in schedule.steps]}"
    assert result.ok, "\n".join(result.problems[:50])
    assert result.counts["source records current in common DB"] == result.counts["source records valid"]
    assert result.counts["sync-in.dlq records"] == result.counts["sync-in.dlq records explained"]
    assert result.counts["injected bad records dead-lettered"] >= len(schedule.injected) > 0  # a kill may repeat one
    assert lost(result.counts) == 0 and duplicated(result.counts) == 0
    assert result.counts["raw records"] >= fault_plan.min_raw_records


def lost(counts: dict[str, int]) -> int:
    """Valid source records not current in the common database, and changes a target should
    hold at their latest version and does not (parked ones with their reason excluded)."""
    return (counts["source records missing in common DB"]
            + sum(n for name, n in counts.items() if name.endswith(": missing at the target")))


def duplicated(counts: dict[str, int]) -> int:
    """(entity, version) pairs a target applied more than once."""
    return sum(n for name, n in counts.items() if name.endswith(": applied more than once"))


def write_soak_report(fault_plan: FaultPlan, schedule: FaultSchedule, counts: dict[str, int], seconds: float,
                      problems: list[str]) -> None:
    """bench/SOAK.md: what the soak run carried, what it suffered and whether it lost or
    duplicated anything (not measured when no reconciliation ran)."""
    applied = {name: schedule.done.count(name) for name in dict.fromkeys(schedule.done)}
    raw = counts["raw records"]
    reconciled = "source records" in counts
    lost_text = f"{lost(counts):,}" if reconciled else "not measured (no reconciliation)"
    duplicated_text = f"{duplicated(counts):,}" if reconciled else "not measured (no reconciliation)"
    rows = [("raw records", f"{raw:,}"),
            ("source records at the end (ground truth)", f"{counts['source records']:,}"),
            ("versions written", f"{counts['versions written']:,}"),
            ("faults applied", f"{len(schedule.done)} ({fault_plan.fault_rounds} rounds of the CI schedule)"),
            ("duration, start to the end of the run", f"{seconds:,.0f} s"),
            ("throughput under faults, raw records / duration", f"{raw / seconds:,.1f} records/s"),
            ("max lag, all consumer groups (sampled every 5 s)", f"{schedule.max_lag:,}"),
            ("injected poison records dead-lettered", f"{counts['injected bad records dead-lettered']:,}"),
            ("lost", lost_text),
            ("duplicated", duplicated_text),
            ("reconciled strictly", "yes" if reconciled and not problems else f"no ({len(problems):,} problems)")]
    lines = [f"# Soak run — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "Written by `make soak` (`pytest tests/faults --soak`: tests/faults/test_fault_injection.py on its soak plan).", "",
             "| figure | value |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows], "",
             "Faults: " + ", ".join(f"{name} ×{n}" for name, n in applied.items()) + ".", "",
             "Reconciliation counts:", "", *[f"- {name}: {n:,}" for name, n in counts.items()], "",
             *(["First problems:", "", *[f"- {p}" for p in problems[:20]], ""] if problems else [])]
    SOAK_REPORT.write_text("\n".join(lines))
    print("\n".join(lines))
