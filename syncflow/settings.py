"""One typed settings object for every role.

Values come from, in order of precedence: keyword arguments, environment variables with the
`SYNCFLOW_` prefix (nested with `__`, e.g. `SYNCFLOW_SYNC_IN__BATCH_SIZE=1000`), the file
named by `SYNCFLOW_ENV_FILE`, the local stack's `stack.env`, then the defaults below, which
point at the local stack. Load it once at an entry point and pass it down.

An unknown `SYNCFLOW_*` environment variable or env file key is refused, naming the nearest
valid one (settings_check.py); `syncflow config check` prints what is in effect.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from syncflow.settings_check import check_names

REPO_ROOT = Path(__file__).resolve().parents[1]


def merge_named_defaults(defaults: dict[str, dict], given: object) -> object:
    """Merge a partial {name: {field: value}} (e.g. from one env var) over the defaults, so
    setting one field of one target or source keeps the rest of its defaults."""
    if not isinstance(given, dict):
        return given
    merged: dict[str, object] = {k: dict(v) for k, v in defaults.items()}
    for name, value in given.items():
        if isinstance(value, dict) and name in merged:
            merged[name] = {**merged[name], **value}  # type: ignore[dict-item]
        else:
            merged[name] = value
    return merged


def local_stack_dir() -> Path:
    """Where deploy/local/stack.sh keeps data, logs and stack.env."""
    if env := os.environ.get("SYNCFLOW_STACK_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/syncflow")
    return Path.home() / ".local/state/syncflow"


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"]


class KafkaSecuritySettings(BaseModel):
    """How every syncflow Kafka client authenticates and encrypts. The default is PLAINTEXT
    (the local stack's quick path)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    # PLAIN and SCRAM
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    # OAUTHBEARER: client-credentials grant against an OIDC token endpoint
    oauth_token_endpoint: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_client_secret_file: Path | None = None
    oauth_scope: str | None = None
    # TLS (SSL and SASL_SSL): the CA that signed the brokers' certificates (system CAs when
    # unset), a client certificate and key for mutual TLS, and host-name verification
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    key_password_file: Path | None = None
    verify_hostname: bool = True

    @model_validator(mode="after")
    def _complete(self) -> "KafkaSecuritySettings":
        for name in ("password", "oauth_client_secret", "key_password"):
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                raise ValueError(f"kafka_security: set either {name} or {name}_file, not both")
        if self.sasl:
            if self.sasl_mechanism == "OAUTHBEARER":
                if not (self.oauth_token_endpoint and self.oauth_client_id
                        and (self.oauth_client_secret is not None or self.oauth_client_secret_file is not None)):
                    raise ValueError("kafka_security: OAUTHBEARER needs oauth_token_endpoint, oauth_client_id "
                                     "and oauth_client_secret (or oauth_client_secret_file)")
            elif not self.username or (self.password is None and self.password_file is None):
                raise ValueError(f"kafka_security: {self.protocol} with {self.sasl_mechanism} needs username "
                                 "and password (or password_file)")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("kafka_security: cert_file and key_file go together")
        return self

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")


class SchemaRegistrySecuritySettings(BaseModel):
    """The schema registry's HTTP basic auth and TLS (https:// URLs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> "SchemaRegistrySecuritySettings":
        if self.password is not None and self.password_file is not None:
            raise ValueError("schema_registry_security: set either password or password_file, not both")
        if self.username and self.password is None and self.password_file is None:
            raise ValueError("schema_registry_security: username needs password (or password_file)")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("schema_registry_security: cert_file and key_file go together")
        return self


class TopicSettings(BaseModel):
    raw_partitions: int = 4
    changes_partitions: int = 4
    dlq_partitions: int = 2
    retry_partitions: int = 2
    raw_retention_ms: int = 7 * 24 * 3600 * 1000
    changes_retention_ms: int = 7 * 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000


class SyncInSettings(BaseModel):
    group_id: str = "sync-in"
    batch_size: int = 500
    batch_timeout_s: float = 0.5
    rules_file: Path = REPO_ROOT / "syncflow" / "agents" / "rules" / "sync_in.yaml"
    outbox_sweep_interval_s: float = 5.0
    web_port: int = 6066
    # Appended to every topic sync-in reads or writes (raw.*, changes.*, sync-in.dlq), so a
    # test or a benchmark runs on its own topics without touching the catalogue's names.
    topic_suffix: str = ""
    retry_backoff_max_s: float = 30.0  # cap of the backoff while a store or Kafka is down
    session_timeout_s: float = 30.0  # a killed worker's partitions move after this long
    # How far ahead of the batch in hand a worker reads: events held by the agent's stream (at
    # least two batches) and bytes fetched per partition. Past these, the read-ahead buys no
    # speed and the memory it takes grows with the backlog, not with the work.
    read_ahead_events: int = 1000
    fetch_bytes_per_partition: int = 256 * 1024


class TargetSettings(BaseModel):
    """One target system. Adding a target is an entry here plus a transformer and client."""

    # Where the target's API is served; a path prefix (https://gw.example.com/one) is kept in
    # front of every request path (sinks/targets/base.join_url).
    base_url: str
    api_key: str = "local-key"  # the static credential, unused when oauth2_token_url is set
    # OAuth2 client credentials: a token from this endpoint, sent as a bearer token, refreshed
    # oauth2_refresh_margin_s before it expires and once when the target answers 401.
    oauth2_token_url: str | None = None
    oauth2_client_id: str | None = None
    oauth2_client_secret: SecretStr | None = None
    oauth2_scope: str | None = None
    oauth2_refresh_margin_s: float = 30.0
    rate_per_minute: float = 60.0
    entity_types: list[str] = ["location", "resident", "service_request", "attachment"]
    echo_suppression: bool = True
    timeout_s: float = 10.0
    concurrency: int = 8
    batch_max: int = 50  # records per call where the target's API takes batches
    rate_burst_s: float = 1.0  # bucket capacity in seconds of rate (at least one token)
    max_answer_bytes: int = 1_048_576  # a larger answer body is not read (a bad answer)

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            raise ValueError(f"base_url must be an http(s) URL without query or fragment, got {value!r}")
        return value

    @model_validator(mode="after")
    def _oauth2_complete(self) -> "TargetSettings":
        if self.oauth2_token_url and not (self.oauth2_client_id and self.oauth2_client_secret):
            raise ValueError("oauth2_token_url needs oauth2_client_id and oauth2_client_secret")
        return self


DEFAULT_TARGETS: dict[str, dict] = {
    "one": {"base_url": "http://127.0.0.1:7101", "rate_per_minute": 60},
    "lessen360": {"base_url": "http://127.0.0.1:7102", "rate_per_minute": 30},
}


def _targets_with_defaults(value: object) -> object:
    return merge_named_defaults(DEFAULT_TARGETS, value)


class SyncOutSettings(BaseModel):
    retry_delays_s: list[float] = [10.0, 60.0, 600.0]
    batch_size: int = 200
    # Batches a worker has in flight at once: with 2, the next batch's decode, checks and
    # database trips overlap the one at the target (agents/sync_out/worker.py). 1, one after
    # the other, until 2 has passed the fault-injection run reliably (docs/sync-out.md).
    batches_in_flight: int = Field(default=1, ge=1, le=8)
    dependency_retry_delay_s: float = 5.0
    dependency_max_attempts: int = 10  # a reference still missing after this many waits → DLQ
    # a record parked for a reference is sent again when the target holds it: checked this often,
    # for this long (sinks/common_db/parked.py)
    parked_release_interval_s: float = 5.0
    parked_retention_days: float = 30.0
    buffer_max: int = 2000  # fetched records held for priority ordering before pausing fetches
    priority_aging_s: float = 30.0  # waiting this long raises a record's priority by one step
    poll_timeout_s: float = 0.2
    outbound_flush_s: float = 2.0  # raw documents' outbound statuses are written this often
    # Appended to every topic and group sync-out uses (changes.*, retry tiers, DLQ), so a test
    # or a benchmark runs on its own topics without touching the catalogue's names.
    topic_suffix: str = ""
    rules_file: Path = REPO_ROOT / "syncflow" / "agents" / "sync_out" / "target_rules.yaml"
    session_timeout_ms: int = 10000  # how soon the group notices a dead worker
    web_port: int = 6070
    targets: dict[str, TargetSettings] = Field(default_factory=dict, validate_default=True)

    @field_validator("targets", mode="before")
    @classmethod
    def _merge_target_defaults(cls, value: object) -> object:
        return _targets_with_defaults(value)

    @property
    def retry_tiers(self) -> int:
        """How many retry tiers (sync-out.<target>.retry.<n> topics) a target has: one per delay."""
        return len(self.retry_delays_s)


class SourceSettings(BaseModel):
    """One source system's API and how its connector pulls from it."""

    base_url: str
    api_key: str = "local-key"
    poll_interval_s: float = 5.0
    properties: list[str] = []  # empty: every property the source lists
    username: str = "syncflow"  # Yardi's auth block (the api_key is its password)
    server_name: str = "voyager-local"
    database: str = "voyager_live"
    page_size: int = 100
    # streams (a property's entity type, a feed) read at once in a pass: a pass over hundreds
    # of per-property streams one by one lasts the sum of their round trips
    streams_in_flight: int = Field(default=4, ge=1, le=64)
    request_timeout_s: float = 10.0
    retry_attempts: int = 5
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0
    overlap_s: float = 2.0  # re-read this much before the cursor time: no gap at the boundary
    # a modified time further ahead of now than this (a bad clock, garbage) moves no cursor,
    # so one such record cannot make the connector skip everything after it
    max_future_s: float = 24 * 3600.0
    topic: str | None = None  # override of raw.<source> (tests, migrations)


DEFAULT_SOURCES: dict[str, dict] = {
    "yardi": {"base_url": "http://127.0.0.1:7001"},
    "realpage": {"base_url": "http://127.0.0.1:7002"},
    "insight": {"base_url": "http://127.0.0.1:7003"},
    "lessen360": {"base_url": "http://127.0.0.1:7004"},
}


class ConnectorSettings(BaseModel):
    dlq_topic: str | None = None  # override of sync-in.dlq for records that fit no schema
    ack_timeout_s: float = 60.0  # a page not acknowledged by then: pass stopped, cursor kept
    emulator_seed: int = 42
    emulator_volume: int = 200  # units in the emulated world
    emulator_invalid_rate: float = 0.02
    sources: dict[str, SourceSettings] = Field(default_factory=dict, validate_default=True)

    @field_validator("sources", mode="before")
    @classmethod
    def _merge_source_defaults(cls, value: object) -> object:
        return merge_named_defaults(DEFAULT_SOURCES, value)


class IngestSettings(BaseModel):
    host: str | None = None  # the ingest API's interface; None: http_host
    port: int = 7080
    max_body_bytes: int = 5 * 1024 * 1024
    ack_timeout_s: float = 30.0  # answer 503 when the broker has not acknowledged by then
    max_json_depth: int = 32  # deeper nesting is a 400 (source records are a few levels deep)
    max_errors_listed: int = 100  # a 400 lists this many field errors and counts the rest
    max_concurrent_requests: int = 32  # more at once: 503 with Retry-After, body not read
    retry_after_s: int = 1  # Retry-After of that 503
    api_keys: dict[str, str] = {
        "yardi": "yardi-key",
        "realpage": "realpage-key",
        "insight": "insight-key",
        "lessen360": "lessen360-key",
    }


class OpsSettings(BaseModel):
    """Health probes, metrics and the operations commands (replay, DLQ redrive, status)."""

    connector_web_port: int = 6080
    health_cache_s: float = 1.5
    check_timeout_s: float = 2.0
    liveness_timeout_s: float = 60.0
    stall_after_s: float = 120.0
    max_lag: int = 1_000_000
    max_error_rate: float = 0.5
    error_rate_window_s: float = 300.0
    error_rate_min_requests: int = 20
    lag_cache_s: float = 5.0
    redrive_group: str = "syncflow-dlq-redrive"
    max_redrives: int = 3
    audit_file: Path = Field(default_factory=lambda: local_stack_dir() / "audit" / "dlq-redrive.jsonl")
    # demo, import, dlq redrive, replay: a plain progress line this often when not on a terminal
    progress_interval_s: float = 10.0
    # `syncflow pause`: how often workers re-read the pauses table, and how many held records
    # a worker keeps in memory beyond its window before it stops fetching (docs/operations.md)
    pause_refresh_s: float = 2.0
    pause_hold_max: int = 20_000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNCFLOW_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # The interface every HTTP server of a role listens on (health and metrics, the ingest API,
    # the emulators): loopback here; the container image sets SYNCFLOW_HTTP_HOST=0.0.0.0.
    http_host: str = "127.0.0.1"
    # TLS and SASL of every Kafka client (SYNCFLOW_KAFKA_SECURITY__PROTOCOL=SASL_SSL, ...): docs/deployment.md
    kafka_security: KafkaSecuritySettings = KafkaSecuritySettings()
    # The largest record any topic takes: topics are created with a matching max.message.bytes,
    # producers with a matching message.max.bytes; a record that cannot fit is refused as too-large.
    kafka_max_message_bytes: int = 1_000_000
    database_url: str = "postgresql+psycopg2://syncflow:syncflow@127.0.0.1:5432/syncflow"
    database_schema: str = "public"
    database_pool_size: int = 4
    # Every connection: refused after connect_timeout, each statement cancelled after statement_timeout
    # (0: none; migrations run without), dead peers found by TCP keepalives (idle, interval, count).
    # TLS goes in the URL: ?sslmode=verify-full&sslrootcert=/path/ca.crt (docs/deployment.md)
    database_connect_timeout_s: int = 10
    database_statement_timeout_s: float = 300.0
    database_keepalives_idle_s: int = 30
    database_keepalives_interval_s: int = 10
    database_keepalives_count: int = 3
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_database: str = "syncflow"
    # finds by _id the raw store runs at once (one round trip each: FerretDB has no fast multi-_id read)
    mongo_read_concurrency: int = 8
    # a MongoDB server that stops answering mid-operation raises after this (the step is retried)
    mongo_socket_timeout_s: float = 30.0
    # raw document ids this worker has written, remembered so that their next record skips the
    # insert attempt (a refused insert costs FerretDB a document-by-document retry); only a hint
    mongo_known_ids_max: int = 200_000
    schema_registry_url: str | None = None
    schema_registry_security: SchemaRegistrySecuritySettings = SchemaRegistrySecuritySettings()
    schemas_dir: Path = REPO_ROOT / "avro_schemas"
    raw_retention_days: int = 30
    log_json: bool = False
    log_level: str = "INFO"

    topics: TopicSettings = TopicSettings()
    sync_in: SyncInSettings = SyncInSettings()
    sync_out: SyncOutSettings = SyncOutSettings()
    connectors: ConnectorSettings = ConnectorSettings()
    ingest: IngestSettings = IngestSettings()
    ops: OpsSettings = OpsSettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, once every SYNCFLOW_* variable and env file key names a setting."""
        files = getattr(dotenv_settings, "env_file", None) or []
        check_names(settings_cls, os.environ, [files] if isinstance(files, (str, Path)) else files)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @classmethod
    def load(cls, **overrides: object) -> "Settings":
        """Settings from the environment, the env file and the local stack's stack.env."""
        files = [local_stack_dir() / "stack.env"]
        if env_file := os.environ.get("SYNCFLOW_ENV_FILE"):
            files.append(Path(env_file))
        return cls(_env_file=[f for f in files if f.exists()], **overrides)  # type: ignore[call-arg]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, for entry points only."""
    return Settings.load()
