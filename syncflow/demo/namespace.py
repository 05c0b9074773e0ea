"""A namespace for one run of the whole pipeline: its own topics and consumer groups (a
suffix), PostgreSQL schema (which holds the connector cursors too) and MongoDB database.
The demo runs in the default namespace (the catalogue's names); a test runs in a fresh one,
so it shares the stack with nothing."""

from __future__ import annotations

from dataclasses import dataclass

from syncflow.settings import Settings
from syncflow.streams.topics import SOURCES, SYNC_IN_DLQ, TopicSpec, catalogue, raw_topic


@dataclass(frozen=True)
class Namespace:
    suffix: str = ""
    database_schema: str = "public"
    mongo_database: str = "syncflow"

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

    def settings(self, base: Settings) -> Settings:
        """`base` as a role in this namespace sees it (for the in-process checker)."""
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

    def topics(self, settings: Settings) -> list[TopicSpec]:
        return [TopicSpec(s.name + self.suffix, s.partitions, s.retention_ms, s.compacted, s.config)
                for s in catalogue(settings)]
