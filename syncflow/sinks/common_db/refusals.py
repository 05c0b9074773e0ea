"""Telling a record the common database refuses from an outage of the database.

PostgreSQL says why in the SQLSTATE: class 22 (data exception: value too long, NUL in JSONB,
numeric out of range, bad datetime) and class 23 (integrity constraint violation) are about
the record; everything else (connection lost, server shutting down, serialization failure,
deadlock, statement timeout) is about the moment, and the batch is retried. The driver's
own client-side refusals of a value (a NUL in a text parameter, text that is not Unicode)
are about the record too. The error may arrive as the driver's exception or wrapped by
SQLAlchemy; both are read the same way."""

from __future__ import annotations

from psycopg2 import errorcodes

from syncflow.errors import DatabaseRefusedError

DATA_CLASSES = ("22", "23")


def data_refusal(exc: BaseException) -> DatabaseRefusedError | None:
    """The record-level refusal in `exc`, or None when `exc` is not one (retry the batch)."""
    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy's DBAPIError wraps the driver's
    code: str | None = getattr(orig, "pgcode", None)
    if code is None:
        if isinstance(orig, (ValueError, TypeError)):  # psycopg2 refused to send the value
            return DatabaseRefusedError(f"the common database driver refused a value: {type(orig).__name__}: {orig}"[:2000])
        return None
    if code[:2] not in DATA_CLASSES:
        return None
    diag = getattr(orig, "diag", None)
    column = getattr(diag, "column_name", None)
    where = [f"{name} {value}" for name, value in (
        ("table", getattr(diag, "table_name", None)),
        ("column", column),
        ("constraint", getattr(diag, "constraint_name", None)),
    ) if value]
    primary = getattr(diag, "message_primary", None) or str(orig).strip()
    detail = getattr(diag, "message_detail", None)
    message = (f"the common database refused the record: SQLSTATE {code} ({errorcodes.lookup(code)})"
               + (f", {', '.join(where)}" if where else "") + f": {primary}" + (f" ({detail})" if detail else ""))
    return DatabaseRefusedError(message[:2000], sqlstate=code, column=column)
