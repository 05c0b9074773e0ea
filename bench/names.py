"""The names of the figures the goals and the scale-out table look up (bench/goals.py,
bench/render.py), in one place with the benchmark scripts that write them."""

from __future__ import annotations

# bench/sync_in.py
SYNC_IN_RATE_VS_BOUND = "sustained rate vs bound (slowest bare part)"
SYNC_IN_RATE_VS_CONSUME = "sustained rate vs bare consume"
SYNC_IN_RATE_VS_UPSERT = "sustained rate vs bare PostgreSQL upsert"
SYNC_IN_RATE_VS_RAW = "sustained rate vs bare raw-store insert"
SYNC_IN_LATENCY_P50 = "latency p50, produce → committed version"
SYNC_IN_LATENCY_P99 = "latency p99, produce → committed version"
SYNC_IN_LARGEST_RSS = "peak RSS, largest worker"
WORKER_RSS_PREFIX = "peak RSS, worker "  # + the worker's number (sync-in) or "<target> <n>" (sync-out)


def sync_in_worker_rss(number: int) -> str:
    return f"{WORKER_RSS_PREFIX}{number}"


# bench/sync_out.py
def sync_out_drain(target: str, workers: int) -> str:
    """Backlog drain of `target` by `workers` worker processes, against bare HTTP."""
    return f"backlog drain, {target}, {workers} worker{'s' if workers != 1 else ''}"


SYNC_OUT_LARGEST_RSS = "peak RSS, largest worker"

# bench/end_to_end.py (written by its own owner: looked up by these words, tolerantly)
E2E_LOAD_RATE_WORDS = "source records/s"  # in the name of the initial load's rate
E2E_LOAD_RECORDS_PARAM = "raw_records_initial_load"
E2E_POLL_INTERVAL_PARAM = "poll_interval_s"
E2E_PUSH_RATE_PARAM = "push_rate_achieved"  # changes/s the push phase reached
