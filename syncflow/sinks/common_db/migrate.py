"""Programmatic Alembic: `migrate(settings)` brings the configured schema to head. No
alembic.ini: the script location and the connection are handed over in code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from syncflow.sinks.common_db.engine import checked_schema, make_engine
from syncflow.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    cfg.attributes["schema"] = schema
    return cfg


def migrate(settings: Settings, revision: str = "head") -> None:
    """Create the schema if needed and upgrade it to `revision` (no statement timeout: a
    migration may wait for another's lock and rewrite large tables)."""
    schema = checked_schema(settings)
    engine = make_engine(settings, pool_size=1, statement_timeout_s=0)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        command.upgrade(alembic_config(engine, schema), revision)
    finally:
        engine.dispose()


def downgrade(settings: Settings, revision: str) -> None:
    engine = make_engine(settings, pool_size=1, statement_timeout_s=0)
    try:
        command.downgrade(alembic_config(engine, checked_schema(settings)), revision)
    finally:
        engine.dispose()

