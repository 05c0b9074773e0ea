"""What `make bench` runs: the jobs (a benchmark script with one set of flags) and their
sizes, full or quick. Each job runs `repeats` times, the repetitions interleaved (every job
once, then every job again) so that a busy spell on the shared machine spreads over the jobs
instead of spoiling all runs of one. Pure: builds command lines, runs nothing."""

from __future__ import annotations

from dataclasses import dataclass

# The sizes the goals are stated at.
GOAL_SYNC_IN_RECORDS = 100_000
GOAL_MEMORY_SMALL_RECORDS = 20_000
GOAL_E2E_RECORDS = 20_000
GOAL_WORKERS = 2  # sync-in's goal and memory figures: two workers


@dataclass(frozen=True)
class Job:
    """One benchmark script with its flags; `name` keys its results and names it in the report."""

    name: str
    bench: str  # sync-in | sync-out | end-to-end
    script: str  # under bench/
    flags: tuple[str, ...]
    title: str  # how the report names it


@dataclass(frozen=True)
class Plan:
    repeats: int
    large_records: int  # sync-in's headline run (two workers) and its memory at that size
    small_records: int  # sync-in's scale-out runs and its memory at the smaller size
    worker_counts: tuple[int, ...]
    sync_out_events: int
    sync_out_flags: tuple[str, ...]
    sync_in_flags: tuple[str, ...]
    e2e_flags: tuple[str, ...]
    quick: bool = False

    def sync_in_job(self, records: int, workers: int) -> Job:
        return Job(f"sync-in-{records}-w{workers}", "sync-in", "sync_in.py",
                   ("--records", str(records), "--workers", str(workers), *self.sync_in_flags),
                   f"sync-in, {records:,} records, {workers} worker{'s' if workers != 1 else ''}")

    def sync_out_job(self) -> Job:
        return Job("sync-out", "sync-out", "sync_out.py",
                   ("--events", str(self.sync_out_events), "--workers", *map(str, self.worker_counts), *self.sync_out_flags),
                   f"sync-out, {self.sync_out_events:,} events, {'/'.join(map(str, self.worker_counts))} workers")

    def e2e_job(self) -> Job:
        return Job("end-to-end", "end-to-end", "end_to_end.py", self.e2e_flags, "end-to-end")

    @property
    def headline(self) -> Job:
        """Sync-in at the large size with two workers: the goal's run."""
        return self.sync_in_job(self.large_records, GOAL_WORKERS)

    @property
    def memory_small(self) -> Job:
        return self.sync_in_job(self.small_records, GOAL_WORKERS)

    def scale_out(self) -> list[Job]:
        """Sync-in at the small size with each worker count."""
        return [self.sync_in_job(self.small_records, n) for n in self.worker_counts]

    def jobs(self) -> list[Job]:
        """Every job once, the long ones first."""
        jobs = [self.headline, *self.scale_out(), self.sync_out_job(), self.e2e_job()]
        unique: dict[str, Job] = {}
        for job in jobs:
            unique.setdefault(job.name, job)
        return list(unique.values())

    def schedule(self) -> list[tuple[int, Job]]:
        """(repetition, job) in the order to run them: repetitions interleaved."""
        return [(rep, job) for rep in range(1, self.repeats + 1) for job in self.jobs()]


def full_plan(repeats: int = 3) -> Plan:
    """About 45 minutes on 2 cores: sync-in at 100,000 records with two workers and at 20,000
    with 1/2/4, sync-out with 1/2/4 worker processes, end to end at ~20,000 source records."""
    return Plan(repeats=repeats, large_records=GOAL_SYNC_IN_RECORDS, small_records=GOAL_MEMORY_SMALL_RECORDS,
                worker_counts=(1, 2, 4), sync_out_events=20_000,
                sync_out_flags=("--seconds", "30"), sync_in_flags=("--trickle", "300"),
                e2e_flags=("--volume", "6200"))  # ~3.3 source records per unit: ~20,400 records


def quick_plan(repeats: int = 1) -> Plan:
    """A smoke run of a few minutes: every job once at small sizes."""
    return Plan(repeats=repeats, large_records=4_000, small_records=2_000, worker_counts=(1, 2, 4),
                sync_out_events=2_000,
                sync_out_flags=("--seconds", "10", "--latency-seconds", "5"), sync_in_flags=("--trickle", "100"),
                e2e_flags=("--volume", "100", "--rounds", "2", "--changes", "10", "--quiet", "10"), quick=True)
