"""Log lines carry the trace id of the record being processed, plain or as JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from syncflow.streams.headers import TRACE_ID
from syncflow.streams.logging import configure_logging, trace_context
from syncflow.streams.settings import Settings


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_trace_id_only_inside_the_context() -> None:
    out = io.StringIO()
    configure_logging(Settings(log_json=True), stream=out)
    log = logging.getLogger("syncflow.test")
    with trace_context([(TRACE_ID, b"abc-123"), ("other", b"x")]):
        log.info("processing %s", "r1", extra={"topic": "raw.yardi"})
    log.warning("after")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "processing r1"
    assert first["trace_id"] == "abc-123"
    assert first["topic"] == "raw.yardi"
    assert first["level"] == "INFO"
    assert "trace_id" not in second


def test_plain_lines_show_the_trace_id() -> None:
    out = io.StringIO()
    configure_logging(Settings(log_json=False, log_level="DEBUG"), stream=out)
    with trace_context([(TRACE_ID, b"t-9")]):
        logging.getLogger("x").debug("hello")
    logging.getLogger("x").debug("bye")
    lines = out.getvalue().splitlines()
    assert "[t-9] hello" in lines[0]
    assert "[-] bye" in lines[1]
