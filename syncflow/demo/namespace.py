"""A namespace for one run of the whole pipeline: its own topics and consumer groups (a
suffix), PostgreSQL schema (which holds the connector cursors too) and MongoDB database,
and optionally its own block of TCP ports for the roles and emulators. The demo runs in the
default namespace (the catalogue's names, the settings' ports); a test runs in a fresh one
with free ports, so it shares the stack and the machine with nothing."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from syncflow.settings import Settings
from syncflow.streams.topics import SOURCES, SYNC_IN_DLQ, TopicSpec, catalogue, raw_topic

PORT_BLOCK = 48  # ingest 1, connectors 8, sync-in 8, sync-out 16, source emulators 8, target emulators 7


@dataclass(frozen=True)
class RolePorts:
    """Where each role and emulator of one run listens: a block of PORT_BLOCK ports from `base`."""

    base: int

    @property
    def ingest(self) -> int:
        return self.base

    @property
    def connector_web(self) -> int:
        return self.base + 1

    @property
    def sync_in_web(self) -> int:
        return self.base + 9

    @property
    def sync_out_web(self) -> int:
        return self.base + 17

    def source_emulator(self, index: int) -> int:
        return self.base + 33 + index

    def target_emulator(self, index: int) -> int:
        return self.base + 41 + index


def free_ports(attempts: int = 200) -> RolePorts:
    """A block of ports none of which is in use right now on 127.0.0.1 (above the ports the
    settings default to, below the kernel's ephemeral range)."""
    for _ in range(attempts):
        base = random.randrange(20000, 32000 - PORT_BLOCK)
        if all(_port_is_free(port) for port in range(base, base + PORT_BLOCK)):
            return RolePorts(base)
    raise RuntimeError(f"no block of {PORT_BLOCK} free ports found")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


@dataclass(frozen=True)
class Namespace:
    suffix: str = ""
    database_schema: str = "public"
    mongo_database: str = "syncflow"
    ports: RolePorts | None = None  # None: the ports of the settings

    def env(self) -> dict[str, str]:
        """The environment that puts a role process in this namespace."""
        env = {
            "SYNCFLOW_DATABASE_SCHEMA": self.database_schema,
            "SYNCFLOW_MONGO_DATABASE": self.mongo_database,
        }
        if self.suffix:
            env["SYNCFLOW_SYNC_IN__TOPIC_SUFFIX"] = self.suffix
            env["SYNCFLOW_SYNC_OUT__TOPIC_SUFFIX"] = self.suffix
            env["SYNCFLOW_SYNC_IN__GROUP_ID"] = "sync-in" + self.suffix
            env["SYNCFLOW_CONNECTORS__DLQ_TOPIC"] = SYNC_IN_DLQ + self.suffix
            for source in SOURCES:
                env[f"SYNCFLOW_CONNECTORS__SOURCES__{source.upper()}__TOPIC"] = raw_topic(source) + self.suffix
        return env

    def port_env(self, base: Settings) -> dict[str, str]:
        """The environment that moves a role process to this namespace's ports (empty without)."""
        if self.ports is None:
            return {}
        moved = self.settings(base)
        env = {
            "SYNCFLOW_INGEST__PORT": str(moved.ingest.port),
            "SYNCFLOW_OPS__CONNECTOR_WEB_PORT": str(moved.ops.connector_web_port),
            "SYNCFLOW_SYNC_IN__WEB_PORT": str(moved.sync_in.web_port),
            "SYNCFLOW_SYNC_OUT__WEB_PORT": str(moved.sync_out.web_port),
        }
        for name, source in moved.connectors.sources.items():
            env[f"SYNCFLOW_CONNECTORS__SOURCES__{name.upper()}__BASE_URL"] = source.base_url
        for name, target in moved.sync_out.targets.items():
            env[f"SYNCFLOW_SYNC_OUT__TARGETS__{name.upper()}__BASE_URL"] = target.base_url
        return env

    def settings(self, base: Settings) -> Settings:
        """`base` as a role in this namespace sees it (for the in-process checker)."""
        base = self._moved_to_ports(base)
        sources = {name: src.model_copy(update={"topic": raw_topic(name) + self.suffix if self.suffix else src.topic})
                   for name, src in base.connectors.sources.items()}
        connectors = base.connectors.model_copy(update={
            "sources": sources,
            "dlq_topic": SYNC_IN_DLQ + self.suffix if self.suffix else base.connectors.dlq_topic,
        })
        return base.model_copy(update={
            "database_schema": self.database_schema,
            "mongo_database": self.mongo_database,
            "connectors": connectors,
            "sync_in": base.sync_in.model_copy(update={
                "topic_suffix": self.suffix,
                "group_id": "sync-in" + self.suffix if self.suffix else base.sync_in.group_id,
            }),
            "sync_out": base.sync_out.model_copy(update={"topic_suffix": self.suffix}),
        })

    def _moved_to_ports(self, base: Settings) -> Settings:
        ports = self.ports
        if ports is None:
            return base
        sources = {name: src.model_copy(update={"base_url": _with_port(src.base_url, ports.source_emulator(i))})
                   for i, (name, src) in enumerate(sorted(base.connectors.sources.items()))}
        targets = {name: t.model_copy(update={"base_url": _with_port(t.base_url, ports.target_emulator(i))})
                   for i, (name, t) in enumerate(sorted(base.sync_out.targets.items()))}
        return base.model_copy(update={
            "ingest": base.ingest.model_copy(update={"port": ports.ingest}),
            "ops": base.ops.model_copy(update={"connector_web_port": ports.connector_web}),
            "connectors": base.connectors.model_copy(update={"sources": sources}),
            "sync_in": base.sync_in.model_copy(update={"web_port": ports.sync_in_web}),
            "sync_out": base.sync_out.model_copy(update={"web_port": ports.sync_out_web, "targets": targets}),
        })

    def topics(self, settings: Settings) -> list[TopicSpec]:
        return [TopicSpec(s.name + self.suffix, s.partitions, s.retention_ms, s.compacted, s.config)
                for s in catalogue(settings)]
