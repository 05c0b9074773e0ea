"""`raw purge`: delete raw documents whose expiresAfter has passed. A TTL index does this on
MongoDB; FerretDB v1 has none, so retention is kept by this command (cron it). The query is
the raw store's (`RawRecordStore.purge_expired`: expiresAfter before now, `$lt`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from syncflow.sinks.raw_store import RawRecordStore


@dataclass(frozen=True)
class PurgeResult:
    expired: int
    deleted: int
    cutoff: datetime

    def to_dict(self) -> dict[str, object]:
        return {"expired": self.expired, "deleted": self.deleted, "cutoff": self.cutoff.isoformat()}


def purge_expired(store: RawRecordStore, *, now: datetime | None = None, dry_run: bool = False, batch: int = 1000) -> PurgeResult:
    """Count the documents expired before `now`; unless a dry run, delete them."""
    now = now or datetime.now(timezone.utc)
    expired = store.count_expired(now)
    deleted = 0 if dry_run else store.purge_expired(now, batch)
    return PurgeResult(expired, deleted, now)
