"""The target's rate limit, shared by every worker of its consumer group: a token bucket in
one PostgreSQL row per target. Each acquire is a single UPDATE … RETURNING that refills the
bucket from the elapsed time and takes up to n whole tokens, so workers never need to agree
on anything but that row. A 429 sets `blocked_until` for the whole group."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

_ENSURE = text(
    """
    INSERT INTO sync_out_rate_limit (target, rate_per_s, capacity, tokens)
    VALUES (:target, :rate, :capacity, :capacity)
    ON CONFLICT (target) DO UPDATE
       SET rate_per_s = excluded.rate_per_s,
           capacity = excluded.capacity,
           tokens = LEAST(sync_out_rate_limit.tokens, excluded.capacity)
    """
)

# clock_timestamp() may be read before the row lock is granted; GREATEST keeps the refill
# from counting time another worker already counted (it can only under-fill, never over-fill).
_ACQUIRE = text(
    """
    WITH cur AS (
        SELECT r.target, r.rate_per_s, r.blocked_until, c.ts AS now_ts,
               GREATEST(r.refilled_at, c.ts) AS refilled_at,
               LEAST(r.capacity, r.tokens + r.rate_per_s *
                     GREATEST(0, EXTRACT(EPOCH FROM (c.ts - r.refilled_at)))) AS avail
          FROM sync_out_rate_limit r, (SELECT clock_timestamp() AS ts) c
         WHERE r.target = :target
           FOR UPDATE OF r
    ), g AS (
        SELECT cur.*,
               CASE WHEN cur.blocked_until > cur.now_ts THEN 0
                    ELSE LEAST(:n, FLOOR(cur.avail + 1e-9))::int END AS granted
          FROM cur
    )
    UPDATE sync_out_rate_limit r
       SET tokens = g.avail - g.granted, refilled_at = g.refilled_at
      FROM g
     WHERE r.target = g.target
    RETURNING g.granted, g.avail - g.granted AS remaining, g.rate_per_s,
              GREATEST(0, EXTRACT(EPOCH FROM (g.blocked_until - g.now_ts)))::float AS blocked_s
    """
)

_REFUND = text(
    "UPDATE sync_out_rate_limit SET tokens = LEAST(capacity, tokens + :n) WHERE target = :target"
)

_BLOCK = text(
    """
    UPDATE sync_out_rate_limit
       SET blocked_until = GREATEST(blocked_until, clock_timestamp() + make_interval(secs => :seconds)),
           tokens = 0, refilled_at = GREATEST(refilled_at, clock_timestamp() + make_interval(secs => :seconds))
     WHERE target = :target
    """
)


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
        with self.engine.begin() as conn:
            conn.execute(_ENSURE, {"target": self.target, "rate": self.rate_per_s, "capacity": self.capacity})

    def try_acquire(self, n: int) -> Grant:
        """Take up to n tokens now; never waits."""
        if n <= 0:
            return Grant(0, 0.0)
        with self.engine.begin() as conn:
            row = conn.execute(_ACQUIRE, {"target": self.target, "n": n}).one()
        granted, remaining, rate, blocked_s = int(row[0]), float(row[1]), float(row[2]), float(row[3])
        if blocked_s > 0:
            return Grant(0, blocked_s)
        wait = 0.0 if granted >= n else max(0.0, (1.0 - remaining) / rate) if rate > 0 else 1.0
        return Grant(granted, wait)

    def refund(self, n: int) -> None:
        """Give back tokens taken for calls that were not made."""
        if n > 0:
            with self.engine.begin() as conn:
                conn.execute(_REFUND, {"target": self.target, "n": n})

    def block_for(self, seconds: float) -> None:
        """The target answered 429 + Retry-After: nobody in the group calls it until then."""
        with self.engine.begin() as conn:
            conn.execute(_BLOCK, {"target": self.target, "seconds": max(0.0, seconds)})
