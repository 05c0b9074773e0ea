"""The whole pipeline under faults, as CI runs it: sync-in workers SIGKILLed twice, a
sync-out worker SIGKILLed, Kafka, PostgreSQL and the MongoDB server each restarted, and the
targets answering 5xx/timeouts for a stretch and 429 for another. The reconciliation then
proves from the sources' ground truth and the targets' own records that every valid record
is the current version of its entity with gap-free versions, that each target holds every
entity at its latest version with each (entity, version) applied once, that the DLQs hold
exactly the invalid inputs, and that nothing was lost or duplicated."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from syncflow.connectors.schemas import schema_name
from syncflow.demo.demo import DemoPlan, drop_state, post_json, run_demo
from syncflow.demo.namespace import Namespace, free_ports
from syncflow.streams.headers import INJECTED
from syncflow.demo.supervisor import Supervisor
from syncflow.streams.avro import codec_for
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import REPO_ROOT, Settings
from syncflow.streams.topics import raw_topic
from tests.integration.agents.test_poison import poison_cases, valid_pool

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

STACK = REPO_ROOT / "deploy" / "local" / "stack.sh"


class FaultSchedule:
    """Each fault once, at its time (seconds since the pipeline started)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.done: list[str] = []
        self.injected: dict[str, tuple[str, ...]] = {}  # filled when the bad records are produced
        self.steps = [
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

    def __call__(self, supervisor: Supervisor, elapsed: float) -> None:
        while self.steps and elapsed >= self.steps[0][0]:
            _, name, action = self.steps.pop(0)
            action(supervisor)
            self.done.append(name)

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


def test_pipeline_loses_and_duplicates_nothing_under_faults(stack: Settings, tmp_path: Path) -> None:
    token = uuid.uuid4().hex[:8]
    namespace = Namespace(suffix=f".ft-{token}", database_schema=f"ft_{token}", mongo_database=f"ft-{token}",
                          ports=free_ports())
    plan = DemoPlan(volume=1200, change_rounds=10, changes_per_round=200, round_interval_s=5,
                    retry_delays_s=(2.0, 5.0, 10.0, 20.0, 30.0), dependency_retry_delay_s=5.0,
                    dependency_max_attempts=40, target_error_rate=0.0, timeout_s=1500)
    schedule = FaultSchedule(namespace.settings(stack))
    console = Console(width=120, force_terminal=False)
    try:
        result = run_demo(stack, plan, tmp_path / "logs", namespace=namespace, strict=True, console=console,
                          on_tick=schedule, injected=schedule.injected)
    finally:
        subprocess.run([str(STACK), "up"], capture_output=True, timeout=300)
        drop_state(namespace.settings(stack), namespace)
    print("faults applied: " + ", ".join(schedule.done))
    for name, count in result.counts.items():
        print(f"{name}: {count}")
    assert not schedule.steps, f"faults not applied: {[s[1] for s in schedule.steps]}"
    assert result.ok, "\n".join(result.problems[:50])
    assert result.counts["source records current in common DB"] == result.counts["source records valid"]
    assert result.counts["sync-in.dlq records"] == result.counts["sync-in.dlq records explained"]
    assert result.counts["injected bad records dead-lettered"] >= len(schedule.injected) > 0  # a kill may repeat one
