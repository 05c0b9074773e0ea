"""Where each connector stream left off: one small JSON file per source under
settings.connectors.cursor_dir, replaced atomically, so a restart continues from the last
position the broker acknowledged."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


class CursorStore:
    """{stream name: cursor} for one source. A stream is e.g. 'mapl01/service_request'."""

    def __init__(self, directory: Path, source: str):
        self.path = Path(directory) / f"{source}.json"
        self._cursors: dict[str, str] = self._read()

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return {str(k): str(v) for k, v in data.get("cursors", {}).items()}

    def get(self, stream: str) -> str | None:
        return self._cursors.get(stream)

    def all(self) -> dict[str, str]:
        return dict(self._cursors)

    def set(self, stream: str, cursor: str) -> None:
        """Record and persist a stream's cursor (write to a temp file, fsync, rename)."""
        self._cursors[stream] = cursor
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"cursors": self._cursors}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
