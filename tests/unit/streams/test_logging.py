"""Log lines carry the trace id of the record being processed, plain or as JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from syncflow.streams.headers import TRACE_ID
from syncflow.streams.logging import configure_logging, trace_context
from syncflow.settings import Settings


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


def test_a_line_about_one_record_of_a_batch_names_its_trace_id() -> None:
    out = io.StringIO()
    configure_logging(Settings(log_json=True), stream=out)
    logging.getLogger("x").warning("record failed", extra={"trace_id": "rec-7"})
    with trace_context([(TRACE_ID, b"outer")]):
        logging.getLogger("x").warning("record failed", extra={"trace_id": "rec-8"})
        logging.getLogger("x").warning("batch line")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line.get("trace_id") for line in lines] == ["rec-7", "rec-8", "outer"]


def test_traceparent_is_w3c_and_derived_from_the_trace_id() -> None:
    from syncflow.tracing import trace_id_of_traceparent, traceparent, w3c_trace_id

    hex_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    tp = traceparent(hex_id, "loc-1:3")
    version, trace, parent, flags = tp.split("-")
    assert (version, trace, flags) == ("00", hex_id, "01") and len(parent) == 16
    assert traceparent(hex_id, "loc-1:3") == tp  # a retried call names the same span
    assert trace_id_of_traceparent(tp) == hex_id
    other = w3c_trace_id("trace-loc-1")  # not hex: hashed, always to the same id
    assert other == w3c_trace_id("trace-loc-1") and len(other) == 32 and int(other, 16) > 0
    assert trace_id_of_traceparent("garbage") is None


def test_every_role_logs_through_configure_logging() -> None:
    """No entry point sets up logging its own way (SYNCFLOW_LOG_JSON would not reach it)."""
    from pathlib import Path

    import syncflow

    package = Path(syncflow.__file__).parent
    own_way = [str(p.relative_to(package)) for p in package.rglob("*.py") if "basicConfig(" in p.read_text()]
    assert own_way == []
