"""Cursor files: survive a restart, replaced atomically."""

from __future__ import annotations

from pathlib import Path

from syncflow.connectors.cursor import CursorStore


def test_cursors_survive_a_new_store(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c", "yardi")
    assert store.get("p1/location") is None
    store.set("p1/location", "1767225600000")
    store.set("p2/resident", "1767225601000")
    store.set("p1/location", "1767225602000")
    again = CursorStore(tmp_path / "c", "yardi")
    assert again.all() == {"p1/location": "1767225602000", "p2/resident": "1767225601000"}
    assert CursorStore(tmp_path / "c", "realpage").all() == {}
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["yardi.json"]  # no temp files left
