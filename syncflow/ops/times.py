"""Times as the operations commands read and print them: ISO-8601 (UTC when no zone is
given) or epoch milliseconds in; ISO-8601 UTC with milliseconds out."""

from __future__ import annotations

from datetime import datetime, timezone

from syncflow.errors import OpsError


def parse_time(text: str) -> int:
    """ISO-8601 (UTC when no zone is given) or epoch milliseconds -> epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise OpsError(f"not a time: {text!r} (use ISO-8601, e.g. 2026-01-31T08:00:00Z, or epoch ms)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def parse_moment(text: str | None) -> datetime | None:
    """`parse_time` as a UTC datetime (what the stores compare with); None for no text."""
    return datetime.fromtimestamp(parse_time(text) / 1000, timezone.utc) if text else None


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
