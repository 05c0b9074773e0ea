"""A database file FerretDB would refuse to start with (no metadata table: its creation was
cut short) is moved out of the data directory with its WAL files; real FerretDB databases
and unrelated files stay (real SQLite files, no services)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from syncflow.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "deploy" / "local" / "ferretdb" / "set_aside_broken.py"


def sqlite_file(path: Path, *tables: str) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS filler (x)")
    for table in tables:
        con.execute(f"CREATE TABLE {table} (x)")
    con.commit()
    con.close()


def test_half_created_databases_are_set_aside_and_the_rest_stays(tmp_path: Path) -> None:
    data, broken = tmp_path / "data", tmp_path / "broken"
    data.mkdir()
    sqlite_file(data / "good.sqlite", "_ferretdb_collections")
    sqlite_file(data / "half.sqlite")
    (data / "half.sqlite-wal").write_bytes(b"")
    (data / "garbage.sqlite").write_bytes(b"\0" * 4096)
    (data / "notes.txt").write_text("not a database")
    result = subprocess.run([sys.executable, str(SCRIPT), str(data), str(broken)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in data.iterdir()) == ["good.sqlite", "notes.txt"]
    assert sorted(p.name for p in broken.iterdir()) == ["garbage.sqlite", "half.sqlite", "half.sqlite-wal"]
    assert "set aside half.sqlite" in result.stderr


def test_nothing_to_set_aside_leaves_no_broken_directory(tmp_path: Path) -> None:
    sqlite_file(tmp_path / "good.sqlite", "_ferretdb_collections")
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path / "broken")], check=True)
    assert not (tmp_path / "broken").exists()
