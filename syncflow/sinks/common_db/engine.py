"""Engine and unit of work for the common database. Created by the entry point that wires a
worker, never at import time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from syncflow.errors import ConfigError
from syncflow.settings import Settings

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def checked_schema(settings: Settings) -> str:
    """The configured schema name, refused unless it is a plain identifier (it goes into
    the connection's search_path and into DDL)."""
    schema = settings.database_schema
    if not _SCHEMA_NAME.match(schema):
        raise ConfigError(f"database_schema {schema!r} is not a plain SQL identifier")
    return schema


def connect_args(settings: Settings, *, statement_timeout_s: float | None = None) -> dict[str, object]:
    """libpq parameters of every connection: the search path, a connect timeout, a statement
    timeout (`statement_timeout_s` overrides the setting; 0 is none) and TCP keepalives, so a
    peer that vanished (a failover, a dropped NAT entry) is noticed instead of waited on.
    TLS is the URL's business (`?sslmode=verify-full&sslrootcert=...`), passed through as is."""
    schema = checked_schema(settings)
    timeout_s = settings.database_statement_timeout_s if statement_timeout_s is None else statement_timeout_s
    return {
        "options": f"-csearch_path={schema} -cstatement_timeout={max(0, int(timeout_s * 1000))}",
        "connect_timeout": settings.database_connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": settings.database_keepalives_idle_s,
        "keepalives_interval": settings.database_keepalives_interval_s,
        "keepalives_count": settings.database_keepalives_count,
    }


def make_engine(settings: Settings, *, pool_size: int | None = None, statement_timeout_s: float | None = None) -> Engine:
    """An engine whose connections resolve every table in `settings.database_schema`, with
    the timeouts and keepalives of `connect_args`."""
    return create_engine(
        settings.database_url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args(settings, statement_timeout_s=statement_timeout_s),
    )


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: commits when the block ends, rolls back when it raises."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
