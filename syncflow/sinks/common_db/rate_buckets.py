"""The rate-limit buckets of the targets, one PostgreSQL row per target (table
sync_out_rate_limit): a token bucket shared by every worker of the target's consumer group.
Taking tokens is a single UPDATE … RETURNING that refills the bucket from the elapsed time
and takes up to n whole tokens, so workers never need to agree on anything but that row. A
429 sets `blocked_until` for the whole group. The limiter over it: agents/sync_out/rate_limit.py."""

from __future__ import annotations

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

_BLOCK = text(
    """
    UPDATE sync_out_rate_limit
       SET blocked_until = GREATEST(blocked_until, clock_timestamp() + make_interval(secs => :seconds)),
           tokens = 0, refilled_at = GREATEST(refilled_at, clock_timestamp() + make_interval(secs => :seconds))
     WHERE target = :target
    """
)

_EXISTS = text("SELECT 1 FROM sync_out_rate_limit WHERE target = :t")


def ensure_bucket(engine: Engine, target: str, rate_per_s: float, capacity: float) -> None:
    """Create or update the target's row (the last starter's settings win)."""
    with engine.begin() as conn:
        conn.execute(_ENSURE, {"target": target, "rate": rate_per_s, "capacity": capacity})


def bucket_exists(engine: Engine, target: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(_EXISTS, {"t": target}).first() is not None


def take_tokens(engine: Engine, target: str, n: int) -> tuple[int, float, float, float]:
    """Take up to n tokens now: (granted, tokens remaining, rate per second, seconds the
    group is still blocked for)."""
    with engine.begin() as conn:
        row = conn.execute(_ACQUIRE, {"target": target, "n": n}).one()
    return int(row[0]), float(row[1]), float(row[2]), float(row[3])


def block_bucket(engine: Engine, target: str, seconds: float) -> None:
    """Nobody in the group takes tokens for `seconds` (a 429 + Retry-After)."""
    with engine.begin() as conn:
        conn.execute(_BLOCK, {"target": target, "seconds": max(0.0, seconds)})
