"""Alembic environment: the engine and schema come from `migrate()` (config.attributes)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

config = context.config
engine = config.attributes["engine"]
schema = config.attributes["schema"]

with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(hashtext(:s))"), {"s": schema})
    connection.commit()
    try:
        context.configure(connection=connection, version_table_schema=schema, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(hashtext(:s))"), {"s": schema})
        connection.commit()
