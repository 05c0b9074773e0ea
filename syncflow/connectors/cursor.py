"""Where each connector stream left off: one small JSON file per source under
settings.connectors.cursor_dir, replaced atomically, so a restart continues from the last
position the broker acknowledged.

Next to a time cursor the file keeps what was published inside the window the next pass
re-reads (`cursor - overlap_s`, inclusive): raw key -> (modified ms, content digest). A
re-read record whose fingerprint matches the last one published for its key is not sent
again, so an idle connector stops re-publishing its cursor boundary every poll. Only an
identical record is skipped, so the no-gap re-read still loses nothing; a record changed
again within the same second differs in content and goes out. Files written before this
had only "cursors" and still load (with nothing marked as published)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Fingerprint = tuple[int, str]  # (modified time in UTC epoch ms, content digest)


def content_digest(record: Any) -> str:
    """A short, stable digest of a record's content (key order does not matter)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class CursorStore:
    """{stream name: cursor} for one source, plus per stream the fingerprints of records
    published inside its re-read window. A stream is e.g. 'mapl01/service_request'."""

    def __init__(self, directory: Path, source: str):
        self.path = Path(directory) / f"{source}.json"
        self._cursors: dict[str, str] = {}
        self._published: dict[str, dict[str, Fingerprint]] = {}
        self._read()

    def _read(self) -> None:
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        self._cursors = {str(k): str(v) for k, v in data.get("cursors", {}).items()}
        for stream, marks in (data.get("published") or {}).items():
            parsed: dict[str, Fingerprint] = {}
            for key, mark in (marks or {}).items():
                ms, _, digest = str(mark).partition(" ")
                if ms.lstrip("-").isdigit() and digest:
                    parsed[str(key)] = (int(ms), digest)
            if parsed:
                self._published[str(stream)] = parsed

    def get(self, stream: str) -> str | None:
        return self._cursors.get(stream)

    def all(self) -> dict[str, str]:
        return dict(self._cursors)

    def published(self, stream: str) -> dict[str, Fingerprint]:
        """raw key -> fingerprint of the records last published inside the stream's window."""
        return dict(self._published.get(stream, {}))

    def set(self, stream: str, cursor: str | None, published: Mapping[str, Fingerprint] | None = None) -> None:
        """Record and persist a stream's cursor (None: keep it) and, when given, replace its
        published fingerprints; both in one atomic write (temp file, fsync, rename). Call it
        only once the broker acknowledged what the cursor and fingerprints cover."""
        cursors = dict(self._cursors)
        marks = {k: dict(v) for k, v in self._published.items()}
        if cursor is not None:
            cursors[stream] = cursor
        if published is not None:
            if published:
                marks[stream] = dict(published)
            else:
                marks.pop(stream, None)
        if cursors == self._cursors and marks == self._published and self.path.exists():
            return  # nothing new: no write
        self._write(cursors, marks)
        self._cursors, self._published = cursors, marks

    def _write(self, cursors: dict[str, str], marks: dict[str, dict[str, Fingerprint]]) -> None:
        data: dict[str, Any] = {"cursors": cursors}
        if marks:
            data["published"] = {s: {k: f"{ms} {digest}" for k, (ms, digest) in m.items()} for s, m in marks.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
