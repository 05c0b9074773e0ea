"""Move a FerretDB SQLite database file that lacks FerretDB's metadata table (a database
whose creation was cut short) out of the data directory, with its -wal/-shm files: FerretDB
refuses to start while one is there.  set_aside_broken.py <data dir> <broken dir>"""

import shutil
import sqlite3
import sys
from pathlib import Path


def is_ferretdb_database(path: Path) -> bool:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return con.execute("SELECT 1 FROM sqlite_master WHERE name = '_ferretdb_collections'").fetchone() is not None
        finally:
            con.close()
    except sqlite3.Error:
        return False


def main(data: Path, broken: Path) -> None:
    for path in sorted(data.glob("*.sqlite")):
        if is_ferretdb_database(path):
            continue
        broken.mkdir(parents=True, exist_ok=True)
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if part.exists():
                shutil.move(str(part), str(broken / part.name))
        print(f"set aside {path.name}: not a FerretDB database (creation cut short?)", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
