"""Where each connector stream left off: one row per source stream in the common database
(table connector_cursors, syncflow/sinks/common_db/cursors.py), in the schema of
settings.database_schema, shared by every replica of the connector. A connector started on
any machine continues from the last position the broker acknowledged.

Next to a time cursor the row keeps what was published inside the window the next pass
re-reads (`cursor - overlap_s`, inclusive): raw key -> (modified ms, content digest). A
re-read record whose fingerprint matches the last one published for its key is not sent
again, so an idle connector stops re-publishing its cursor boundary every poll. Only an
identical record is skipped, so the no-gap re-read still loses nothing; a record changed
again within the same second differs in content and goes out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from syncflow.sinks.common_db.cursors import load_cursors, save_cursor

Fingerprint = tuple[int, str]  # (modified time in UTC epoch ms, content digest)


def content_digest(record: Any) -> str:
    """A short, stable digest of a record's content (key order does not matter)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class CursorStore:
    """{stream name: cursor} for one source, plus per stream the fingerprints of records
    published inside its re-read window. A stream is e.g. 'mapl01/service_request'."""

    def __init__(self, engine: Engine, source: str):
        self.engine = engine
        self.source = source
        self._cursors: dict[str, str] = {}
        self._published: dict[str, dict[str, Fingerprint]] = {}
        self.reload()

    def reload(self) -> None:
        """Read the source's rows again (another replica may have moved them)."""
        cursors: dict[str, str] = {}
        published: dict[str, dict[str, Fingerprint]] = {}
        for stream, (cursor, marks) in load_cursors(self.engine, self.source).items():
            if cursor is not None:
                cursors[stream] = cursor
            parsed: dict[str, Fingerprint] = {}
            for key, mark in marks.items():
                if isinstance(mark, list) and len(mark) == 2 and isinstance(mark[0], int) and isinstance(mark[1], str):
                    parsed[key] = (mark[0], mark[1])
            if parsed:
                published[stream] = parsed
        self._cursors, self._published = cursors, published

    def get(self, stream: str) -> str | None:
        return self._cursors.get(stream)

    def all(self) -> dict[str, str]:
        return dict(self._cursors)

    def published(self, stream: str) -> dict[str, Fingerprint]:
        """raw key -> fingerprint of the records last published inside the stream's window."""
        return dict(self._published.get(stream, {}))

    def set(self, stream: str, cursor: str | None, published: Mapping[str, Fingerprint] | None = None) -> None:
        """Record and persist a stream's cursor (None: keep it) and, when given, replace its
        published fingerprints; both in one row, one transaction. Call it only once the
        broker acknowledged what the cursor and fingerprints cover."""
        new_cursor = cursor if cursor is not None else self._cursors.get(stream)
        marks = dict(published) if published is not None else self._published.get(stream, {})
        if new_cursor == self._cursors.get(stream) and marks == self._published.get(stream, {}):
            return  # nothing new: no write
        save_cursor(self.engine, self.source, stream, new_cursor,
                    {key: [ms, digest] for key, (ms, digest) in marks.items()})
        if new_cursor is not None:
            self._cursors[stream] = new_cursor
        if marks:
            self._published[stream] = marks
        else:
            self._published.pop(stream, None)
