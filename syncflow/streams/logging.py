"""Process-wide logging: plain lines for people, JSON lines for log shippers
(settings.log_json), and the trace id of the record being processed on every line, so one
record can be followed from connector to target."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone

from syncflow.streams.headers import TRACE_ID, header_value
from syncflow.settings import Settings

trace_id_var: ContextVar[str | None] = ContextVar("syncflow_trace_id", default=None)
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(trace_id)s] %(message)s"


class TraceIdFilter(logging.Filter):
    """Puts the current trace id (or "-") on every record as `trace_id`, unless the line
    names one itself (`extra={"trace_id": ...}`, for a line about one record of a batch)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = getattr(record, "trace_id", None) or trace_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id, exception, extras."""

    STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "trace_id"}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id and trace_id != "-":
            line["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in self.STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(settings: Settings, stream: object = None) -> logging.Handler:
    """Replace the root logger's handlers with one that writes to `stream` (stderr). Every
    role calls it first thing (`syncflow run <role>`), so SYNCFLOW_LOG_JSON and
    SYNCFLOW_LOG_LEVEL apply everywhere; the sync-in worker tells Faust not to replace it."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(TraceIdFilter())
    handler.setFormatter(JsonFormatter() if settings.log_json else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    return handler


@contextmanager
def trace_context(headers: list[tuple[str, bytes | None]] | None) -> Iterator[str | None]:
    """While a record is processed: its trace id (header TRACE_ID) on every log line."""
    with trace_scope(header_value(headers, TRACE_ID)) as trace_id:
        yield trace_id


@contextmanager
def trace_scope(trace_id: str | None) -> Iterator[str | None]:
    """While one record is handled: `trace_id` on every log line (a decoded change event's)."""
    token = trace_id_var.set(trace_id)
    try:
        yield trace_id
    finally:
        trace_id_var.reset(token)
