"""The local stack heals like a deployment with a service manager: FerretDB killed outright
is started again by its supervisor and keeps its data (real processes of the local stack)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from syncflow.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

STACK = REPO_ROOT / "deploy" / "local" / "stack.sh"


def ferretdb_pid() -> int:
    """The FerretDB process under the supervisor whose pid the stack keeps."""
    stack_dir = Path(subprocess.run([str(STACK), "dir"], check=True, capture_output=True, text=True).stdout.strip())
    supervisor = (stack_dir / "mongo" / "pid").read_text().strip()
    children = subprocess.run(["pgrep", "-P", supervisor], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, f"FerretDB's supervisor {supervisor} has children {children}"
    return int(children[0])


def test_ferretdb_killed_outright_is_started_again_with_its_data(stack: Settings) -> None:
    database = f"t-{uuid.uuid4().hex[:8]}"
    client: MongoClient = MongoClient(stack.mongo_url, serverSelectionTimeoutMS=2000)
    try:
        client[database]["kept"].insert_one({"_id": "before", "n": 1})
        before = ferretdb_pid()
        os.kill(before, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                assert client[database]["kept"].find_one({"_id": "before"}) == {"_id": "before", "n": 1}
                break
            except PyMongoError:
                assert time.monotonic() < deadline, "FerretDB did not come back within 60 s"
                time.sleep(0.5)
        assert ferretdb_pid() != before
    finally:
        for _ in range(60):
            try:
                client.drop_database(database)
                break
            except PyMongoError:
                time.sleep(0.5)
        client.close()
