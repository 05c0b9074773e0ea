"""A namespace with its own ports moves every role and emulator of a run off the ports the
settings default to, and the environment it gives a role process says the same as the
in-process view of it (no services)."""

from __future__ import annotations

import socket

import pytest

from syncflow.demo.demo import DemoPlan, role_specs
from syncflow.demo.namespace import PORT_BLOCK, Namespace, RolePorts, free_ports
from syncflow.settings import Settings


def listening_ports(settings: Settings) -> list[int]:
    specs = role_specs(settings, DemoPlan(sync_in_workers=4, sync_out_workers={"one": 8, "lessen360": 8}))
    urls = [settings.connectors.sources[name].base_url for name in sorted(settings.connectors.sources)] + \
        [settings.sync_out.targets[name].base_url for name in sorted(settings.sync_out.targets)]
    return [s.web_port for s in specs if s.web_port] + [int(url.rsplit(":", 1)[1].split("/")[0]) for url in urls]


def test_a_namespace_with_ports_uses_only_its_block_and_no_port_twice() -> None:
    base = Settings.load()
    ports = RolePorts(24000)
    moved = Namespace(suffix=".t", ports=ports).settings(base)
    used = listening_ports(moved)
    assert len(used) == len(set(used)), sorted(used)
    assert all(ports.base <= port < ports.base + PORT_BLOCK for port in used), sorted(used)
    assert not set(used) & set(listening_ports(base))


def test_the_role_environment_gives_the_same_ports_as_the_in_process_view(monkeypatch: pytest.MonkeyPatch) -> None:
    base = Settings.load()
    namespace = Namespace(suffix=".t", ports=RolePorts(25000))
    for name, value in {**namespace.env(), **namespace.port_env(base)}.items():
        monkeypatch.setenv(name, value)
    in_role = Settings()
    assert listening_ports(in_role) == listening_ports(namespace.settings(base))
    assert in_role.sync_out.targets["one"].rate_per_minute == base.sync_out.targets["one"].rate_per_minute


def test_without_ports_nothing_moves() -> None:
    base = Settings.load()
    assert Namespace(suffix=".t").port_env(base) == {}
    assert listening_ports(Namespace(suffix=".t").settings(base)) == listening_ports(base)


def test_free_ports_skips_a_block_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        starts = iter([taken - 1, 26000])
        monkeypatch.setattr("syncflow.demo.namespace.random.randrange", lambda *_: next(starts))
        assert free_ports().base == 26000
