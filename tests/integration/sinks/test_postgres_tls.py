"""The common database over TLS, as a platform's PostgreSQL requires it: the local stack's
server has ssl=on with a certificate signed by the stack's CA, and syncflow's engine takes
the TLS options in the database URL (libpq's sslmode / sslrootcert). verify-full connects
encrypted and checks the host name; a CA that did not sign the server's certificate is
refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from syncflow.sinks.common_db.engine import make_engine
from syncflow.settings import Settings, local_stack_dir

pytestmark = pytest.mark.integration
CA_NAME = "SYNCFLOW_LOCAL_POSTGRES_CA_FILE"


def stack_ca() -> Path:
    """The CA of the stack's PostgreSQL certificate (environment, else stack.env)."""
    value = os.environ.get(CA_NAME)
    stack_env = local_stack_dir() / "stack.env"
    if not value and stack_env.exists():
        for line in stack_env.read_text().splitlines():
            name, _, found = line.partition("=")
            if name == CA_NAME:
                value = found.strip()
    if not value or not Path(value).exists():
        pytest.fail(f"{CA_NAME} is not set: run `deploy/local/stack.sh up` (it turns TLS on)", pytrace=False)
    return Path(value)


def with_tls(settings: Settings, ca: Path, host: str = "localhost") -> Settings:
    url = settings.database_url.replace("@127.0.0.1:", f"@{host}:")
    return settings.model_copy(update={"database_url": f"{url}?sslmode=verify-full&sslrootcert={ca}"})


def test_verify_full_connects_encrypted(stack: Settings) -> None:
    engine = make_engine(with_tls(stack, stack_ca()))
    try:
        with engine.connect() as conn:
            encrypted = conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar()
        assert encrypted is True
    finally:
        engine.dispose()


def test_a_certificate_from_another_ca_is_refused(stack: Settings, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(other)], check=True, capture_output=True)
    engine = make_engine(with_tls(stack, other))
    try:
        with pytest.raises(OperationalError, match="certificate verify failed"):
            with engine.connect():
                pass
    finally:
        engine.dispose()
