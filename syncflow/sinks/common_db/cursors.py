"""Connector cursors in the common database (table connector_cursors): read a source's
streams, write one stream's row. The connectors call these through
syncflow.connectors.cursor.CursorStore."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from syncflow.sinks.common_db.models import ConnectorCursor

CursorRow = tuple[str | None, dict[str, Any]]  # (cursor, published marks as stored)


def load_cursors(engine: Engine, source: str) -> dict[str, CursorRow]:
    """stream -> (cursor, published) of every stream `source` has saved."""
    table = ConnectorCursor.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.stream, table.c.cursor, table.c.published)
                            .where(table.c.source_system == source)).all()
    return {row.stream: (row.cursor, dict(row.published or {})) for row in rows}


def save_cursor(engine: Engine, source: str, stream: str, cursor: str | None, published: dict[str, Any]) -> None:
    """Insert or replace one stream's row, in its own transaction."""
    table = ConnectorCursor.__table__
    stmt = insert(table).values(source_system=source, stream=stream, cursor=cursor, published=published)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.source_system, table.c.stream],
                                      set_={"cursor": stmt.excluded.cursor, "published": stmt.excluded.published,
                                            "updated_at": func.now()})
    with engine.begin() as conn:
        conn.execute(stmt)
