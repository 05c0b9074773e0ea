"""Start, kill and restart syncflow role processes (`syncflow run <role>`), each with its
own log file. The demo and the fault-injection suite drive the pipeline through this."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RoleSpec:
    """One process: a name, the arguments after `syncflow`, its ops port and extra env."""

    name: str
    args: list[str]
    web_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)


class RoleProcess:
    def __init__(self, spec: RoleSpec, log_dir: Path, base_env: dict[str, str]):
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self._base_env = base_env
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.crashes: list[int] = []  # exit codes of the exits nobody asked for
        self._log_start = 0  # where this start's output begins in the (appended) log

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        env = {**self._base_env, **self.spec.env}
        log = open(self.log_path, "ab")
        self._log_start = log.tell()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "syncflow", *self.spec.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self._proc is not None
            os.killpg(self._proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no chance to finish or commit anything."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if not self.alive:
            return
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.kill()

    def wait(self, timeout: float) -> bool:
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def wait_ready(self, timeout: float = 60.0, path: str = "/ready") -> bool:
        """Wait until the role answers 200 on its ops port (True at once if it has none)."""
        if self.spec.web_port is None:
            return self.alive
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.spec.web_port}{path}"
        while time.monotonic() < deadline:
            if not self.alive:
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.5)
        return False

    def output(self) -> str:
        """What the process wrote since it was last started."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Supervisor:
    """Owns a set of role processes; stopping it stops them all."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self._env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.roles: dict[str, RoleProcess] = {}

    def start(self, spec: RoleSpec) -> RoleProcess:
        role = RoleProcess(spec, self.log_dir, self._env)
        role.start()
        self.roles[spec.name] = role
        return role

    def __getitem__(self, name: str) -> RoleProcess:
        return self.roles[name]

    def dead(self) -> list[RoleProcess]:
        return [r for r in self.roles.values() if not r.alive]

    def restart_exited(self, max_crashes: int) -> list[RoleProcess]:
        """Start again every role that exited on its own, as a container runtime would (a
        worker whose start-up meets a broker restart exits). Returns the roles that exited
        more than `max_crashes` times: those are broken, not unlucky."""
        given_up = []
        for role in self.dead():
            role.crashes.append(role.exit_code if role.exit_code is not None else -1)
            if len(role.crashes) > max_crashes:
                given_up.append(role)
            else:
                role.restart()
        return given_up

    def stop_all(self, timeout: float = 30.0) -> None:
        for role in self.roles.values():
            if role.alive:
                role.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for role in self.roles.values():
            if not role.wait(max(0.1, deadline - time.monotonic())):
                role.kill()

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
