"""Sync-out: every change event to every interested target, once, in order per entity, at
the target's rate, or into the target's DLQ with a reason. See docs/sync-out.md."""

from syncflow.agents.sync_out.runner import build_worker, run_sync_out, serve_sync_out
from syncflow.agents.sync_out.worker import SyncOutTopics, SyncOutWorker, sync_out_topics

__all__ = ["SyncOutTopics", "SyncOutWorker", "build_worker", "run_sync_out", "serve_sync_out", "sync_out_topics"]
