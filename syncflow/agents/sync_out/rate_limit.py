"""The target's rate limit, shared by every worker of its consumer group: a token bucket in
one PostgreSQL row per target (sinks/common_db/rate_buckets.py holds its SQL). A 429 blocks
the whole group until the Retry-After has passed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from syncflow.sinks.common_db.rate_buckets import block_bucket, ensure_bucket, take_tokens


@dataclass(frozen=True)
class Grant:
    granted: int
    wait_s: float  # when granted < asked: how long until the next token (or the block ends)


class RateLimiter:
    """Group-wide token bucket of one target. Blocking calls: run them off the event loop."""

    def __init__(self, engine: Engine, target: str, rate_per_minute: float, burst_s: float = 1.0):
        self.engine = engine
        self.target = target
        self.rate_per_s = rate_per_minute / 60.0
        self.capacity = max(1.0, self.rate_per_s * burst_s)

    def ensure(self) -> None:
        """Create or update the target's row from the settings (the last starter's win)."""
        ensure_bucket(self.engine, self.target, self.rate_per_s, self.capacity)

    def try_acquire(self, n: int) -> Grant:
        """Take up to n tokens now; never waits."""
        if n <= 0:
            return Grant(0, 0.0)
        granted, remaining, rate, blocked_s = take_tokens(self.engine, self.target, n)
        if blocked_s > 0:
            return Grant(0, blocked_s)
        wait = 0.0 if granted >= n else max(0.0, (1.0 - remaining) / rate) if rate > 0 else 1.0
        return Grant(granted, wait)

    def block_for(self, seconds: float) -> None:
        """The target answered 429 + Retry-After: nobody in the group calls it until then."""
        block_bucket(self.engine, self.target, seconds)
