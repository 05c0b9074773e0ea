"""The common database engine's connections on the real PostgreSQL: a statement running past
`database_statement_timeout_s` is cancelled by the server, migrations run without that limit,
a server that accepts the TCP connection and never answers is given up on after
`database_connect_timeout_s`, and every connection asks for TCP keepalives."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from syncflow.sinks.common_db.engine import make_engine
from syncflow.sinks.common_db.migrate import migrate
from syncflow.settings import Settings

pytestmark = pytest.mark.integration


def test_a_statement_past_the_timeout_is_cancelled_and_migrations_have_none(settings: Settings) -> None:
    s = settings.model_copy(update={"database_statement_timeout_s": 0.3})
    engine = make_engine(s, pool_size=1)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "300ms"
            started = time.monotonic()
            with pytest.raises(OperationalError) as cancelled:
                conn.execute(text("SELECT pg_sleep(5)"))
            assert time.monotonic() - started < 3
            assert getattr(cancelled.value.orig, "pgcode", None) == "57014"  # query_canceled
    finally:
        engine.dispose()
    tiny = settings.model_copy(update={"database_statement_timeout_s": 0.001})
    migrate(tiny)  # every DDL statement of the migrations would take longer than 1 ms
    with make_engine(tiny, statement_timeout_s=0).connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"


def test_every_connection_asks_for_tcp_keepalives(settings: Settings) -> None:
    s = settings.model_copy(update={"database_keepalives_idle_s": 17, "database_keepalives_interval_s": 4,
                                    "database_keepalives_count": 5})
    engine = make_engine(s, pool_size=1)
    try:
        with engine.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            params = dbapi.get_dsn_parameters()  # type: ignore[union-attr]
            assert (params.get("keepalives"), params.get("keepalives_idle"), params.get("keepalives_interval"),
                    params.get("keepalives_count")) == ("1", "17", "4", "5")
            sock = socket.socket(fileno=socket.dup(dbapi.fileno()))  # type: ignore[union-attr]
            try:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 17
            finally:
                sock.close()
    finally:
        engine.dispose()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose connections the kernel accepts and nothing ever answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_a_server_that_never_answers_is_given_up_on_after_the_connect_timeout(settings: Settings, silent_server: int) -> None:
    url = settings.database_url.split("@")[0] + f"@127.0.0.1:{silent_server}/syncflow"
    s = settings.model_copy(update={"database_url": url, "database_connect_timeout_s": 2})
    engine = make_engine(s, pool_size=1)
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="timeout"):
            engine.connect()
    finally:
        engine.dispose()
    assert 1.5 < time.monotonic() - started < 10
