"""`syncflow dlq list|show|redrive` on real topics: filters, one record's headers and value,
a redrive back to the original topic that happens once, and the loop guard."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from syncflow.cli import dlq
from syncflow.errors import PermanentTargetError, ValidationError
from syncflow.ops import dead_letter_queue
from syncflow.ops.dead_letter_queue import VALUE_REPLACED
from syncflow.streams.admin import create_topics, delete_topics
from syncflow.streams.dead_letters import PREFIX, FailureContext, failure_headers
from syncflow.streams.headers import ENTITY_TYPE, REDRIVE_COUNT, TRACE_ID
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings
from syncflow.streams.topics import TopicSpec
from tests.integration.ops.conftest import consume_all, read_json

runner = CliRunner()


def park(settings: Settings, dlq_topic: str, original: str, key: str, error: Exception, entity_type: str,
         redrives: int = 0, target: str | None = None) -> None:
    """Produce one record to a DLQ as a worker would: own headers plus failure headers."""
    own = [(ENTITY_TYPE, entity_type.encode()), (TRACE_ID, f"trace-{key}".encode())]
    if redrives:
        own.append((REDRIVE_COUNT, str(redrives).encode()))
    status = getattr(error, "status", None)
    ctx = FailureContext(original, 0, 7, 1_700_000_000_000, "sync-out.one", error, attempt=3, http_status=status, target=target)
    ReliableProducer(settings).send_all([OutgoingRecord(dlq_topic, key.encode(), f"value-{key}".encode(), own + failure_headers(ctx))])


def test_list_and_show_with_filters(cli_settings: Settings, topic_factory: Callable[..., str]) -> None:
    dlq_topic, original = topic_factory("sync-out.one.dlq"), topic_factory("changes")
    park(cli_settings, dlq_topic, original, "a", PermanentTargetError("400 bad unit", 400), "location", target="one")
    park(cli_settings, dlq_topic, original, "b", PermanentTargetError("422 no resident", 422), "resident", target="one")
    park(cli_settings, dlq_topic, original, "c", ValidationError([]), "location", target="lessen360")

    everything = runner.invoke(dlq.app, ["list", dlq_topic, "--json"])
    assert everything.exit_code == 0, everything.output
    assert [r["key"] for r in read_json(everything.stdout)] == ["a", "b", "c"]
    permanent_locations = runner.invoke(dlq.app, ["list", dlq_topic, "--category", "permanent", "--entity-type", "location", "--json"])
    assert [r["key"] for r in read_json(permanent_locations.stdout)] == ["a"]
    for_lessen = runner.invoke(dlq.app, ["list", dlq_topic, "--target", "lessen360", "--json"])
    assert [r["key"] for r in read_json(for_lessen.stdout)] == ["c"]
    none_yet = runner.invoke(dlq.app, ["list", dlq_topic, "--since", "2999-01-01T00:00:00Z", "--json"])
    assert read_json(none_yet.stdout) == []
    table = runner.invoke(dlq.app, ["list", dlq_topic])
    assert table.exit_code == 0 and "3 record(s)" in table.stdout

    offset_of_b = [r for r in read_json(everything.stdout) if r["key"] == "b"][0]["offset"]
    shown = runner.invoke(dlq.app, ["show", dlq_topic, "-p", "0", "-o", str(offset_of_b), "--json"])
    assert shown.exit_code == 0, shown.output
    body = read_json(shown.stdout)
    assert body["failure"]["http.status"] == "422"
    assert body["failure"]["exception.message"] == "422 no resident"
    assert body["failure"]["original.topic"] == original
    assert body["headers"][TRACE_ID] == "trace-b"
    assert (body["value_kind"], body["value"]) == ("text", "value-b")
    missing = runner.invoke(dlq.app, ["show", dlq_topic, "-p", "0", "-o", "99"])
    assert missing.exit_code == 1


def test_show_decodes_avro_values(cli_settings: Settings, topic_factory: Callable[..., str]) -> None:
    from syncflow.streams.avro import codec_for
    from tests.integration.ops.test_raw import minimal_record
    from syncflow.connectors.schemas import load_schema, schema_name

    dlq_topic = topic_factory("sync-in.dlq")
    record = minimal_record(load_schema(cli_settings.schemas_dir, "yardi", "location"))
    value = codec_for(cli_settings).encode(schema_name("yardi", "location"), record, topic="raw.yardi")
    ctx = FailureContext("raw.yardi", 0, 1, 2, "sync-in", ValidationError([]))
    ReliableProducer(cli_settings).send_all([OutgoingRecord(dlq_topic, b"location:L1", value, failure_headers(ctx))])
    shown = runner.invoke(dlq.app, ["show", dlq_topic, "-p", "0", "-o", "0", "--json"])
    assert shown.exit_code == 0, shown.output
    body = read_json(shown.stdout)
    assert body["value_kind"] == "avro " + schema_name("yardi", "location")
    assert json.loads(body["value"]) == json.loads(json.dumps(record, default=str))
    human = runner.invoke(dlq.app, ["show", dlq_topic, "-p", "0", "-o", "0"])
    assert human.exit_code == 0 and "original.topic" in human.stdout and "raw.yardi" in human.stdout


def test_redrive_sends_back_once_and_the_loop_guard_parks(
    cli_settings: Settings, topic_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dead_letter_queue, "REDRIVE_BATCH", 1)  # a commit after every record
    dlq_topic, original = topic_factory("sync-in.dlq"), topic_factory("raw")
    park(cli_settings, dlq_topic, original, "fixed-1", ValidationError([]), "location")
    park(cli_settings, dlq_topic, original, "fixed-2", PermanentTargetError("400", 400), "resident")
    park(cli_settings, dlq_topic, original, "looping", ValidationError([]), "location", redrives=3)
    park(cli_settings, dlq_topic, original, "fixed-3", ValidationError([]), "service_request")

    # first only the validation failures, then everything: nothing is sent twice
    first = runner.invoke(dlq.app, ["redrive", dlq_topic, "--category", "validation", "--json"])
    assert first.exit_code == 3, first.output  # one record parked
    report = read_json(first.stdout)
    assert (report["redriven"], report["parked"], report["skipped"]) == (2, 1, 1)
    assert report["parked_records"][0]["key"] == "looping"
    second = runner.invoke(dlq.app, ["redrive", dlq_topic, "--json"])
    report = read_json(second.stdout)
    # fixed-2 now; fixed-1 lies before the committed offset, fixed-3 is remembered beyond it
    assert (report["redriven"], report["parked"], report["already_done"]) == (1, 1, 1)
    third = runner.invoke(dlq.app, ["redrive", dlq_topic, "--json"])
    assert read_json(third.stdout)["redriven"] == 0

    back = consume_all(cli_settings, original, "check-" + original, expected=4, timeout=5)
    assert sorted(m.key() for m in back) == [b"fixed-1", b"fixed-2", b"fixed-3"]
    for m in back:
        headers = dict(m.headers())
        assert m.value() == b"value-" + m.key()
        assert headers[REDRIVE_COUNT] == b"1"
        assert headers[TRACE_ID] == b"trace-" + m.key()
        assert not any(k.startswith(PREFIX) for k in headers)

    audit = [json.loads(line) for line in Path(cli_settings.ops.audit_file).read_text().splitlines()]
    assert [a["key"] for a in audit if a["action"] == "redriven"] == ["fixed-1", "fixed-3", "fixed-2"]
    assert sum(a["action"] == "parked" for a in audit) == 3  # reported on every run


def test_dry_run_redrive_sends_nothing(cli_settings: Settings, topic_factory: Callable[..., str]) -> None:
    dlq_topic, original = topic_factory("sync-in.dlq"), topic_factory("raw")
    park(cli_settings, dlq_topic, original, "k", ValidationError([]), "location")
    result = runner.invoke(dlq.app, ["redrive", dlq_topic, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert read_json(result.stdout)["redriven"] == 1
    assert consume_all(cli_settings, original, "check-" + original, expected=1, timeout=3) == []
    real = runner.invoke(dlq.app, ["redrive", dlq_topic, "--json"])
    assert read_json(real.stdout)["redriven"] == 1


def test_redrive_to_another_topic(cli_settings: Settings, topic_factory: Callable[..., str]) -> None:
    dlq_topic, original, retry = topic_factory("sync-out.one.dlq"), topic_factory("changes"), topic_factory("retry")
    park(cli_settings, dlq_topic, original, "k", PermanentTargetError("503", 503), "location", target="one")
    result = runner.invoke(dlq.app, ["redrive", dlq_topic, "--to-topic", retry, "--json"])
    assert read_json(result.stdout)["redriven"] == 1
    [msg] = consume_all(cli_settings, retry, "check-" + retry, expected=1)
    assert (msg.key(), msg.value()) == (b"k", b"value-k")
    assert consume_all(cli_settings, original, "check-" + original, expected=1, timeout=2) == []


# -- redrive never stops on one record ---------------------------------------------------------
def put(settings: Settings, dlq_topic: str, key: bytes, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> None:
    """One record on a DLQ exactly as given (any headers, even broken ones)."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(dlq_topic, value, key, headers=headers)
    assert producer.flush(30) == 0


def failure(original: str) -> list[tuple[str, bytes | None]]:
    return list(failure_headers(FailureContext(original, 0, 7, 1_700_000_000_000, "sync-in", ValidationError([]))))


def replaced(headers: list[tuple[str, bytes | None]], name: str, value: bytes) -> list[tuple[str, bytes | None]]:
    return [(k, value if k == name else v) for k, v in headers]


# name -> (value, headers of the bad record given its original topic, the reason redrive gives)
BAD_RECORDS: dict[str, tuple[bytes | None, Callable[[str], list[tuple[str, bytes | None]]], str]] = {
    "no failure headers": (b"v", lambda original: [(TRACE_ID, b"t")], "no failure headers"),
    "no original.topic header": (
        b"v", lambda original: [h for h in failure(original) if h[0] != PREFIX + "original.topic"], "no original.topic header"),
    "garbled original.topic": (
        b"v", lambda original: replaced(failure(original), PREFIX + "original.topic", b"raw yardi/../x"), "is not a topic name"),
    "original.topic not UTF-8": (
        b"v", lambda original: replaced(failure(original), PREFIX + "original.topic", original.encode() + b"\xff"),
        f"header {PREFIX}original.topic is not UTF-8 text"),
    "redrive count not UTF-8": (
        b"v", lambda original: failure(original) + [(REDRIVE_COUNT, b"\xff\xfe")], f"header {REDRIVE_COUNT} is not UTF-8 text"),
    "redrive count not a number": (
        b"v", lambda original: failure(original) + [(REDRIVE_COUNT, b"-1")], f"header {REDRIVE_COUNT} is not a number"),
    "tombstone": (None, failure, "no value (a tombstone)"),
    "value replaced by a pointer": (
        b'{"value.replaced": "..."}', lambda original: failure(original) + [(VALUE_REPLACED, b"pointer")], "only points at the original"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_redrive_parks_a_record_it_cannot_send_back_and_sends_the_rest(
    case: str, cli_settings: Settings, topic_factory: Callable[..., str]
) -> None:
    dlq_topic, original = topic_factory("sync-in.dlq"), topic_factory("raw")
    value, headers, reason = BAD_RECORDS[case]
    park(cli_settings, dlq_topic, original, "before", ValidationError([]), "location")
    put(cli_settings, dlq_topic, b"bad", value, headers(original))
    park(cli_settings, dlq_topic, original, "after", ValidationError([]), "location")
    assert_bad_parked_and_rest_redriven(cli_settings, dlq_topic, original, reason)


def test_redrive_parks_a_record_whose_original_topic_no_longer_exists(
    cli_settings: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str]
) -> None:
    dlq_topic, original = topic_factory("sync-in.dlq"), topic_factory("raw")
    gone = unique("raw-gone")
    create_topics(cli_settings, [TopicSpec(gone, 1, 3600_000)])
    park(cli_settings, dlq_topic, original, "before", ValidationError([]), "location")
    park(cli_settings, dlq_topic, gone, "bad", ValidationError([]), "location")
    park(cli_settings, dlq_topic, original, "after", ValidationError([]), "location")
    delete_topics(cli_settings, [gone])
    assert_bad_parked_and_rest_redriven(cli_settings, dlq_topic, original, f"topic {gone} does not exist")


def test_redrive_parks_a_record_too_large_for_its_original_topic(
    cli_settings: Settings, topic_factory: Callable[..., str], unique: Callable[[str], str]
) -> None:
    """The broker refuses it (the topic's max.message.bytes is now smaller than the record);
    the small records sent in the same run still arrive."""
    dlq_topic = topic_factory("sync-in.dlq")
    original = unique("raw-small")
    create_topics(cli_settings, [TopicSpec(original, 1, 3600_000, config={"max.message.bytes": "20000"})])
    try:
        park(cli_settings, dlq_topic, original, "before", ValidationError([]), "location")
        put(cli_settings, dlq_topic, b"bad", os.urandom(60_000), failure(original))  # random: lz4 cannot shrink it
        park(cli_settings, dlq_topic, original, "after", ValidationError([]), "location")
        assert_bad_parked_and_rest_redriven(cli_settings, dlq_topic, original, "MSG_SIZE_TOO_LARGE")
    finally:
        delete_topics(cli_settings, [original])


def assert_bad_parked_and_rest_redriven(settings: Settings, dlq_topic: str, original: str, reason: str) -> None:
    """`before` and `after` go back once; `bad` is parked with `reason` in the output and the
    audit log, on this run and the next."""
    first = runner.invoke(dlq.app, ["redrive", dlq_topic, "--json"])
    assert first.exit_code == 3, first.output
    report = read_json(first.stdout)
    assert (report["redriven"], report["parked"]) == (2, 1), report
    [parked] = report["parked_records"]
    assert parked["key"] == "bad" and reason in parked["reason"], parked

    human = runner.invoke(dlq.app, ["redrive", dlq_topic])  # the next run: reported again, nothing resent
    assert human.exit_code == 3, human.output
    assert f"parked {dlq_topic}[0]@1 key 'bad': " in human.stdout and reason in human.stdout
    assert "redriven 0, parked 1" in human.stdout

    back = consume_all(settings, original, "check-" + original, expected=3, timeout=3)
    assert sorted(m.key() for m in back) == [b"after", b"before"]
    assert all(dict(m.headers())[REDRIVE_COUNT] == b"1" for m in back)
    audit = [json.loads(line) for line in Path(settings.ops.audit_file).read_text().splitlines()]
    assert [a["key"] for a in audit if a["action"] == "redriven"] == ["before", "after"]
    parked_lines = [a for a in audit if a["action"] == "parked"]
    assert len(parked_lines) == 2 and all(a["key"] == "bad" and reason in a["reason"] for a in parked_lines)


def test_own_headers_that_are_not_utf8_go_back_byte_for_byte(cli_settings: Settings, topic_factory: Callable[..., str]) -> None:
    dlq_topic, original = topic_factory("sync-in.dlq"), topic_factory("raw")
    put(cli_settings, dlq_topic, b"k", b"v", [(TRACE_ID, b"\xff\x00binary"), ("empty", None)] + failure(original))
    result = runner.invoke(dlq.app, ["redrive", dlq_topic, "--json"])
    assert result.exit_code == 0, result.output
    assert read_json(result.stdout)["redriven"] == 1
    shown = runner.invoke(dlq.app, ["show", dlq_topic, "-p", "0", "-o", "0"])
    assert shown.exit_code == 0, shown.output
    [msg] = consume_all(cli_settings, original, "check-" + original, expected=1)
    assert msg.headers() == [(TRACE_ID, b"\xff\x00binary"), (REDRIVE_COUNT, b"1")]


def test_redrive_to_a_missing_topic_is_refused_before_reading(cli_settings: Settings, topic_factory: Callable[..., str]) -> None:
    dlq_topic, original = topic_factory("sync-in.dlq"), topic_factory("raw")
    park(cli_settings, dlq_topic, original, "k", ValidationError([]), "location")
    result = runner.invoke(dlq.app, ["redrive", dlq_topic, "--to-topic", original + "-missing"])
    assert result.exit_code == 1 and "does not exist" in result.output


# -- a redriven record that fails again ---------------------------------------------------------
def test_a_redriven_record_that_fails_again_returns_to_the_dlq_with_its_count_until_parked(
    cli_settings: Settings, unique: Callable[[str], str]
) -> None:
    """The real sync-in handler dead-letters an undecodable raw record; each redrive sends it
    back to raw.<source>, sync-in fails it again and its DLQ copy carries the redrive count,
    so after max_redrives the loop guard parks it instead of cycling forever."""
    from syncflow.agents.sync_in_handler import BatchProgress
    from syncflow.roles.sync_in import build_sync_in, prepare_stores
    from syncflow.streams.records import KafkaRecord
    from syncflow.streams.topics import ENTITY_TYPES, SYNC_IN_DLQ, changes_topic, raw_topic

    suffix = unique("")
    raw, dlq_topic = raw_topic("yardi") + suffix, SYNC_IN_DLQ + suffix
    names = [raw, dlq_topic] + [changes_topic(e) + suffix for e in ENTITY_TYPES]
    create_topics(cli_settings, [TopicSpec(n, 1, 3600_000) for n in names])
    s = cli_settings.model_copy(update={"sync_in": cli_settings.sync_in.model_copy(update={"topic_suffix": suffix})})
    runtime = build_sync_in(s)
    prepare_stores(s, runtime)
    try:
        put(s, raw, b"location:L1", b"not avro at all", [(TRACE_ID, b"trace-L1")])
        counts: list[bytes | None] = []
        for cycle in range(3):
            [msg] = consume_all(s, raw, "sync-in-" + suffix, expected=1)  # what sync-in reads next
            result = runtime.handler.process(BatchProgress([KafkaRecord(**KafkaRecord.fields_of(msg))]))
            assert result.rejected == 1
            dead = consume_all(s, dlq_topic, "dlq-" + suffix, expected=1)[-1]
            headers = dict(dead.headers())
            assert headers[PREFIX + "original.topic"] == raw.encode() and headers[TRACE_ID] == b"trace-L1"
            counts.append(headers.get(REDRIVE_COUNT))
            redriven = runner.invoke(dlq.app, ["redrive", dlq_topic, "--max-redrives", "2", "--json"])
            report = read_json(redriven.stdout)
            if cycle < 2:
                assert (redriven.exit_code, report["redriven"], report["parked"]) == (0, 1, 0), redriven.output
            else:
                assert (redriven.exit_code, report["redriven"], report["parked"]) == (3, 0, 1), redriven.output
                assert report["parked_records"][0]["reason"] == "already redriven 2 times"
        assert counts == [None, b"1", b"2"]
        assert consume_all(s, raw, "sync-in-" + suffix, expected=1, timeout=2) == []  # parked: not sent again
    finally:
        runtime.close()
        delete_topics(cli_settings, names)
