"""The raw documents' outbound status, written behind the delivery path.

The status in the raw store is a note for people; the truth is the common database's
per-target state, recorded before offsets are committed. So sync-out does not wait for the
raw store: statuses are coalesced (the latest per raw document and target) and written by a
background thread every `outbound_flush_s`, in one bulk write. A slow or restarting MongoDB
server then slows nobody's deliveries, and it gets one write per interval instead of one per
batch of every worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from syncflow.agents.sync_out.batch import OutboundStatusSink

log = logging.getLogger(__name__)

StatusItem = tuple[str, str, str, str, str]  # source_system, entity_type, source_id, target, status


class OutboundStatusWriter:
    """An OutboundStatusSink whose writes return at once and reach `sink` within `interval_s`."""

    def __init__(self, sink: OutboundStatusSink, interval_s: float):
        self.sink, self.interval_s = sink, interval_s
        self._pending: dict[tuple[str, str, str, str], str] = {}
        self._since: float | None = None  # monotonic time the oldest pending status arrived
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbound-status-writer", daemon=True)
        self._thread.start()

    def set_outbound_statuses(self, items: Sequence[StatusItem]) -> None:
        with self._lock:
            for s, e, i, target, status in items:
                self._pending[(s, e, i, target)] = status
            if self._pending and self._since is None:
                self._since = time.monotonic()

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def backlog(self) -> tuple[int, float | None]:
        """Statuses not written yet, and how long the oldest has waited (the raw-store backlog)."""
        with self._lock:
            since = self._since
            return len(self._pending), None if since is None else time.monotonic() - since

    def flush(self) -> bool:
        """Write what is pending; on failure keep it (unless newer statuses came meanwhile)."""
        with self._lock:
            batch, self._pending = self._pending, {}
            since, self._since = self._since, None
        if not batch:
            return True
        try:
            self.sink.set_outbound_statuses([(*key, status) for key, status in batch.items()])
            return True
        except Exception as exc:  # noqa: BLE001 - the raw store is down or slow: try again later
            log.warning("raw store outbound statuses: %d not written yet: %s", len(batch), exc)
            with self._lock:
                self._pending = {**batch, **self._pending}
                self._since = since
            return False

    def close(self, attempts: int = 3) -> None:
        """Stop the thread and write what is left (a few tries; a status lost here is only a
        note). The sink stays open: whoever made it closes it."""
        self._stop.set()
        self._thread.join()
        for _ in range(attempts):
            if self.flush():
                break

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()
