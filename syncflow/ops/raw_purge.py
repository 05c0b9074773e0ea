"""`raw purge`: delete raw documents whose expiresAfter has passed. A TTL index does this on
MongoDB; FerretDB v1 has none, so retention is kept by this command (cron it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from pymongo.collection import Collection


@dataclass(frozen=True)
class PurgeResult:
    expired: int
    deleted: int
    cutoff: datetime

    def to_dict(self) -> dict[str, object]:
        return {"expired": self.expired, "deleted": self.deleted, "cutoff": self.cutoff.isoformat()}


def expired_filter(now: datetime) -> dict[str, object]:
    return {"expiresAfter": {"$lt": now}}


def purge_expired(collection: Collection, *, now: datetime | None = None, dry_run: bool = False, batch: int = 1000) -> PurgeResult:
    """Delete expired documents in batches of ids (bounded requests on any server)."""
    now = now or datetime.now(timezone.utc)
    query = expired_filter(now)
    expired = collection.count_documents(query)
    deleted = 0
    if not dry_run:
        while True:
            ids = [d["_id"] for d in collection.find(query, {"_id": 1}).limit(batch)]
            if not ids:
                break
            deleted += collection.delete_many({"_id": {"$in": ids}}).deleted_count
    return PurgeResult(expired, deleted, now)
