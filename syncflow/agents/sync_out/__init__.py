"""Sync-out: every change event to every interested target, once, in order per entity, at
the target's rate, or into the target's DLQ with a reason. See docs/sync-out.md; the
worker is wired in syncflow/roles/sync_out.py."""

from syncflow.agents.sync_out.worker import SyncOutWorker

__all__ = ["SyncOutWorker"]
