"""`syncflow pause` / `syncflow resume` and `syncflow status` on the real stack: the pause is
a row of the common database with its scope, reason, time and author; status shows it with
the group's lag as the records held; a worker's cached rules keep holding through a
PostgreSQL restart and the pause is still there afterwards; resume lifts exactly its scope."""

from __future__ import annotations

import subprocess
import time

from typer.testing import CliRunner

from syncflow.cli import app
from syncflow.agents.pauses import PauseRules
from syncflow.sinks.common_db.pauses import list_pauses
from syncflow.sinks.common_db.engine import make_engine
from syncflow.settings import REPO_ROOT, Settings

from .conftest import read_json

runner = CliRunner()


def invoke(*args: str) -> object:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})  # wide enough that no cell wraps
    assert result.exit_code == 0, result.output
    return read_json(result.output) if "--json" in args else result.output


def test_pause_status_postgres_restart_and_resume(cli_settings: Settings) -> None:
    made = invoke("pause", "--target", "one", "--property", "p2", "--reason", "P2 cut-over at ONE", "--by", "ops-a", "--json")
    assert made["property"] == "P2" and made["reason"] == "P2 cut-over at ONE" and made["paused_by"] == "ops-a" and made["new"]
    invoke("pause", "--source", "yardi", "--entity-type", "resident", "--reason", "bad feed")
    again = invoke("pause", "--target", "one", "--property", "P2", "--reason", "still cutting over", "--json")
    assert not again["new"] and again["since"] == made["since"] and again["reason"] == "still cutting over"
    bad = runner.invoke(app, ["pause", "--target", "nowhere"])
    assert bad.exit_code != 0
    assert runner.invoke(app, ["pause", "--target", "one", "--source", "yardi"]).exit_code != 0

    status = invoke("status", "--json")
    pauses = {(p["side"], p["system"], p["property"], p["entity_type"]): p for p in status["pauses"]}
    assert set(pauses) == {("sync-out", "one", "P2", ""), ("sync-in", "yardi", "", "resident")}
    p2 = pauses[("sync-out", "one", "P2", "")]
    assert p2["reason"] == "still cutting over" and p2["since"] and p2["age_s"] >= 0
    assert p2["held_approx"] == 0 and p2["group"].startswith("sync-out.one")  # the group's lag: nothing waiting
    assert "P2 cut-over" not in invoke("status") and "still cutting over" in invoke("status")

    engine = make_engine(cli_settings, pool_size=1)
    rules = PauseRules(engine, "sync-out", "one", refresh_s=0.0)
    try:
        rules.refresh()
        assert rules.holds("location", "P2") and not rules.holds("location", "P1")
        subprocess.run([str(REPO_ROOT / "deploy" / "local" / "stack.sh"), "restart", "postgres"], check=True,
                       capture_output=True, timeout=120)
        rules.refresh()  # whether or not the server is back yet, the rules are not lost
        assert rules.holds("location", "P2")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                scopes = list_pauses(engine)
                break
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(0.5)
        assert {(s.side, s.system, s.prop) for s in scopes} == {("sync-out", "one", "P2"), ("sync-in", "yardi", "")}
        rules.refresh()
        assert rules.holds("resident", "P2")

        out = runner.invoke(app, ["resume", "--target", "one"])  # not a pause that exists: nothing changes
        assert out.exit_code == 1 and "no such pause" in out.output
        resumed = invoke("resume", "--target", "one", "--property", "P2", "--json")
        assert resumed["resumed"]["property"] == "P2" and resumed["still_paused"] == []
        rules.refresh()
        assert not rules.active
        assert [(s.side, s.system) for s in list_pauses(engine)] == [("sync-in", "yardi")]
    finally:
        engine.dispose()
