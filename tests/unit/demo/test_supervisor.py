"""The supervisor starts again a role that exits on its own, until the role has used up its
crash budget (real processes, no services)."""

from __future__ import annotations

import time
from pathlib import Path

from syncflow.demo.supervisor import RoleSpec, Supervisor


def wait_dead(supervisor: Supervisor, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not supervisor.dead():
        assert time.monotonic() < deadline, "the role did not exit"
        time.sleep(0.05)


def test_exited_roles_start_again_until_the_crash_budget_is_spent(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as supervisor:
        role = supervisor.start(RoleSpec("broken", ["no-such-command"]))
        for n in (1, 2):
            wait_dead(supervisor)
            assert supervisor.restart_exited(max_crashes=2) == []
            assert role.restarts == n and len(role.crashes) == n and all(code != 0 for code in role.crashes)
        wait_dead(supervisor)
        assert supervisor.restart_exited(max_crashes=2) == [role]
        assert role.restarts == 2 and not role.alive
        assert "no-such-command" in role.output()  # this start's output only; the log has all three
        assert role.log_tail(200).count("no-such-command") == 3 * role.output().count("no-such-command")

