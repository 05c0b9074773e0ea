"""Dead-letter topics: list, show and redrive.

`list`/`show` read a DLQ from its oldest record with a plain consumer that commits nothing.
`redrive` sends records back to their original topic (header original.topic) with their own
key, value and headers plus a redrive counter. It remembers what it handled with its own
consumer group (settings.ops.redrive_group): the committed offset is the first record not
handled yet, and the commit metadata lists handled offsets beyond it (records a filter
passed over stay for a later run). Running it twice redrives nothing twice.

A loop guard parks records already redriven settings.ops.max_redrives times: they are
reported on every run and never produced again. Redrive never stops on one record: a record
it cannot send back (no or unreadable failure headers, an original topic that no longer
exists, a tombstone, a value replaced by a pointer, one the broker refuses, e.g. as too
large) is parked the same way, with its reason in the audit log and the report."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from syncflow.errors import OpsError
from syncflow.ops.partition_read import assigning_consumer, read_between
from syncflow.ops.times import iso_ms
from syncflow.streams import admin as kafka_admin
from syncflow.streams.dead_letters import PREFIX, VALUE_REPLACED, carry_headers, read_failure_headers
from syncflow.streams.headers import ENTITY_TYPE, REDRIVE_COUNT, header_value
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.streams.records import Headers, KafkaRecord
from syncflow.settings import Settings

REDRIVE_BATCH = 200
MAX_METADATA_CHARS = 3000  # Kafka's offset.metadata.max.bytes is 4096 by default
KAFKA_METADATA_MAX = 4000  # a margin below offset.metadata.max.bytes
SEND_TIMEOUT_S = 150.0  # longer than the producer's message.timeout.ms: each record gets its own answer
TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")  # what Kafka accepts as a topic name


@dataclass(frozen=True)
class DlqRecord(KafkaRecord):
    @property
    def failure(self) -> dict[str, str]:
        return read_failure_headers(self.headers)

    @property
    def original_topic(self) -> str | None:
        return self.failure.get("original.topic")

    @property
    def category(self) -> str | None:
        return self.failure.get("error.category")

    @property
    def target(self) -> str | None:
        """The failure header, else the target named by the DLQ topic (sync-out.<target>.dlq)."""
        if target := self.failure.get("target"):
            return target
        parts = self.topic.split(".")
        return parts[1] if len(parts) == 3 and parts[0] == "sync-out" and parts[2] == "dlq" else None

    @property
    def entity_type(self) -> str | None:
        """The entity-type header, else the one named by a changes.<entity_type> origin."""
        if value := header_value(self.headers, ENTITY_TYPE):
            return value
        origin = self.original_topic or ""
        return origin.split(".", 1)[1] if origin.startswith("changes.") else None

    @property
    def failed_at_ms(self) -> int:
        try:
            return int(self.failure["failed.at"])
        except (KeyError, ValueError):
            return self.timestamp_ms

    @property
    def redrive_count(self) -> int:
        value = header_value(self.headers, REDRIVE_COUNT)
        return int(value) if value and value.isdigit() else 0

    def unreadable(self) -> str | None:
        """Why the headers redrive relies on cannot be trusted, or None: a failure header or
        the redrive counter that is not UTF-8 text (decoded, it would name a wrong topic or
        defeat the loop guard), or a counter that is not a number."""
        for key, value in self.headers:
            if value is None or not (key.startswith(PREFIX) or key == REDRIVE_COUNT):
                continue
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                return f"header {key} is not UTF-8 text"
            if key == REDRIVE_COUNT and not text.isdigit():
                return f"header {REDRIVE_COUNT} is not a number: {text[:40]!r}"
        return None

    def summary(self) -> dict[str, object]:
        failure = self.failure
        return {
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "failed_at": iso_ms(self.failed_at_ms), "original_topic": self.original_topic,
            "target": self.target, "entity_type": self.entity_type, "category": self.category,
            "exception": failure.get("exception.class"), "message": failure.get("exception.message"),
            "attempt": failure.get("attempt"), "redrive_count": self.redrive_count,
            "key": self.key.decode(errors="replace") if self.key is not None else None,
        }  # fmt: skip


@dataclass(frozen=True)
class DlqFilter:
    target: str | None = None
    category: str | None = None
    entity_type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, record: DlqRecord) -> bool:
        return (
            (self.target is None or record.target == self.target)
            and (self.category is None or record.category == self.category)
            and (self.entity_type is None or record.entity_type == self.entity_type)
            and (self.since_ms is None or record.failed_at_ms >= self.since_ms)
            and (self.until_ms is None or record.failed_at_ms < self.until_ms)
        )


# -- reading -------------------------------------------------------------------------------
def _read(consumer: Consumer, starts: dict[kafka_admin.TP, int], ends: dict[kafka_admin.TP, int], timeout: float) -> Iterator[DlqRecord]:
    """Records from each start offset up to (not including) the end offset of its partition."""
    for msg in read_between(consumer, starts, ends, timeout):
        yield DlqRecord(**KafkaRecord.fields_of(msg))


def read_dlq(settings: Settings, topic: str, flt: DlqFilter | None = None, limit: int | None = None, timeout: float = 15.0) -> list[DlqRecord]:
    """The DLQ's records, oldest first per partition, that match the filter (no commits)."""
    admin = kafka_admin.admin_client(settings)
    marks = kafka_admin.watermarks(admin, kafka_admin.topic_partitions(admin, [topic]))
    consumer = assigning_consumer(settings, "dlq-reader")
    out: list[DlqRecord] = []
    try:
        for record in _read(consumer, {tp: lo for tp, (lo, _) in marks.items()}, {tp: hi for tp, (_, hi) in marks.items()}, timeout):
            if flt is None or flt.matches(record):
                out.append(record)
                if limit is not None and len(out) >= limit:
                    break
    finally:
        consumer.close()
    return out


def find_record(settings: Settings, topic: str, partition: int, offset: int, timeout: float = 15.0) -> DlqRecord:
    consumer = assigning_consumer(settings, "dlq-reader")
    try:
        for record in _read(consumer, {(topic, partition): offset}, {(topic, partition): offset + 1}, timeout):
            if record.offset == offset:
                return record
    finally:
        consumer.close()
    raise OpsError(f"no record at {topic}[{partition}]@{offset}")


def describe_value(value: bytes | None, decode: Callable[[bytes], tuple[str, dict]] | None = None) -> tuple[str, str]:
    """(kind, text): Avro decoded to JSON when `decode` can, else UTF-8 text, else hex."""
    if value is None:
        return "null", ""
    if decode is not None:
        try:
            schema, record = decode(value)
            return f"avro {schema}", json.dumps(record, indent=2, default=str, ensure_ascii=False)
        except Exception:  # noqa: BLE001 - not Avro (or an unknown schema): fall back to text
            pass
    try:
        return "text", value.decode("utf-8")
    except UnicodeDecodeError:
        return "hex", value.hex(" ")


# -- what redrive has handled: committed offset + handled offsets beyond it -----------------
def encode_ranges(done: set[int]) -> str:
    """{3,4,5,9} -> "3-5,9" (kept as the commit metadata of the redrive group)."""
    parts: list[str] = []
    for value in sorted(done):
        if parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) == value - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{value}"
        elif parts and "-" not in parts[-1] and int(parts[-1]) == value - 1:
            parts[-1] = f"{parts[-1]}-{value}"
        else:
            parts.append(str(value))
    return ",".join(parts)


def decode_ranges(text: str | None) -> set[int]:
    done: set[int] = set()
    for part in (text or "").split(","):
        if not part.strip():
            continue
        low, _, high = part.partition("-")
        done.update(range(int(low), int(high or low) + 1))
    return done


def advance(seen: list[int], done: set[int], end: int) -> tuple[int, set[int]]:
    """The next committed offset (first seen offset not done, or `end`) and the done offsets
    that must still be remembered beyond it."""
    commit = next((o for o in sorted(seen) if o not in done), end)
    return commit, {o for o in done if o >= commit}


# -- redrive -------------------------------------------------------------------------------
@dataclass
class RedriveReport:
    redriven: list[dict[str, object]] = field(default_factory=list)
    parked: list[dict[str, object]] = field(default_factory=list)
    skipped: int = 0  # not matching the filter
    already_done: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"redriven": len(self.redriven), "parked": len(self.parked), "skipped": self.skipped,
                "already_done": self.already_done, "parked_records": self.parked}  # fmt: skip


def redrive_headers(record: DlqRecord) -> Headers:
    """The record's own headers (no failure headers) with the redrive counter increased."""
    kept = [(k, v) for k, v in carry_headers(record.headers) if k != REDRIVE_COUNT]
    return kept + [(REDRIVE_COUNT, str(record.redrive_count + 1).encode())]


class AuditLog:
    """One JSON line per handled record, appended to a file and echoed."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None = print):
        self._path, self._echo = path, echo

    def write(self, entry: dict[str, object]) -> None:
        line = json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **entry}, default=str)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self._echo is not None:
            self._echo(line)


def park_reason(record: DlqRecord, destination: str | None, topics: set[str], max_redrives: int) -> str | None:
    """Why `record` cannot be sent to `destination` (its original topic unless --to-topic),
    or None when it can. `topics` are the topics that exist."""
    if reason := record.unreadable():
        return reason
    if record.redrive_count >= max_redrives:
        return f"already redriven {record.redrive_count} times"
    if header_value(record.headers, VALUE_REPLACED) is not None:
        return "its value only points at the original record (too large for the DLQ): replay that instead"
    if not destination:
        return "no original.topic header" if record.failure else "no failure headers"
    if not TOPIC_NAME.match(destination):
        return f"original.topic {destination[:80]!r} is not a topic name"
    if destination not in topics:
        return f"topic {destination} does not exist"
    if record.value is None:
        return "no value (a tombstone): nothing to send back"
    return None


def produce_each(producer: Producer, records: list[OutgoingRecord], timeout: float = SEND_TIMEOUT_S) -> list[str | None]:
    """Send every record; per record None when the broker acknowledged it, else why it was
    refused (by the producer, e.g. too large, or by the broker). Raises OpsError only when
    the producer as a whole fails: no answer within `timeout`, or a fatal error."""
    errors: list[str | None] = [None] * len(records)
    fatal: list[KafkaError] = []

    def on_delivery(index: int) -> Callable[[KafkaError | None, Message], None]:
        def callback(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors[index] = f"the broker refused it: {err.name()}: {err.str()}"
                if err.fatal():
                    fatal.append(err)

        return callback

    for index, rec in enumerate(records):
        while True:
            try:
                producer.produce(rec.topic, rec.value, rec.key, headers=rec.headers, on_delivery=on_delivery(index))
                break
            except BufferError:
                producer.poll(0.1)
            except KafkaException as exc:
                errors[index] = f"the producer refused it: {exc.args[0].name()}: {exc.args[0].str()}"
                break
    remaining = producer.flush(timeout)
    if remaining or fatal:
        why = f"fatal producer error {fatal[0]}" if fatal else f"{remaining} record(s) not acknowledged within {timeout:g}s"
        raise OpsError(f"redrive stopped: {why}; the records of this batch stay unhandled")
    return errors


def redrive(
    settings: Settings,
    topic: str,
    flt: DlqFilter | None = None,
    *,
    audit: AuditLog,
    max_redrives: int | None = None,
    dry_run: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    to_topic: str | None = None,
    timeout: float = 15.0,
) -> RedriveReport:
    """Send matching, not yet handled records of `topic` back to their original topic, or to
    `to_topic` (e.g. a target's first retry tier, so only that target's group sees them).
    Records that cannot go back are parked with their reason; the others still go."""
    max_redrives = settings.ops.max_redrives if max_redrives is None else max_redrives
    admin = kafka_admin.admin_client(settings)
    marks = kafka_admin.watermarks(admin, kafka_admin.topic_partitions(admin, [topic]))
    topics = kafka_admin.existing_topics(admin)
    if to_topic is not None and to_topic not in topics:
        raise OpsError(f"--to-topic {to_topic!r} does not exist")
    consumer = assigning_consumer(settings, "dlq-redrive", settings.ops.redrive_group)
    producer = ReliableProducer(settings).raw
    report = RedriveReport()
    try:
        committed = consumer.committed([TopicPartition(t, p) for t, p in marks], timeout=timeout)
        starts: dict[kafka_admin.TP, int] = {}
        done: dict[kafka_admin.TP, set[int]] = {}
        for tp in committed:
            low, _ = marks[(tp.topic, tp.partition)]
            starts[(tp.topic, tp.partition)] = max(tp.offset, low) if tp.offset >= 0 else low
            done[(tp.topic, tp.partition)] = decode_ranges(tp.metadata) if tp.offset >= 0 else set()
        ends = {tp: hi for tp, (_, hi) in marks.items()}
        total = sum(max(ends[tp] - starts[tp], 0) for tp in marks)
        seen: dict[kafka_admin.TP, list[int]] = {tp: [] for tp in marks}
        batch: list[tuple[DlqRecord, dict[str, object]]] = []

        def park(record: DlqRecord, reason: str) -> None:
            entry = {"action": "parked", "reason": reason, **record.summary()}
            report.parked.append(entry)
            audit.write(entry)

        def send_batch() -> None:
            """Produce the batch, then record what the broker took as handled and commit that
            at once, so a run cut short is not redriven again; what it refused is parked. The
            metadata size is checked before producing."""
            positions = {tp: offs[-1] + 1 for tp, offs in seen.items() if offs}
            _commits(seen, {tp: done[tp] | {r.offset for r, _ in batch if r.tp == tp} for tp in done}, positions)
            outgoing = [OutgoingRecord(to_topic or r.original_topic or "", r.key, r.value, redrive_headers(r)) for r, _ in batch]
            errors = produce_each(producer, outgoing)
            for index, error in enumerate(errors):
                if error is not None and len(outgoing) > 1:  # it may have shared a refused request: alone once more
                    errors[index] = produce_each(producer, [outgoing[index]])[0]
            for (record, entry), error in zip(batch, errors, strict=True):
                if error is not None:
                    park(record, error)
                    continue
                done[record.tp].add(record.offset)
                report.redriven.append(entry)
                audit.write(entry)
            batch.clear()
            commits = _commits(seen, done, positions, limit=KAFKA_METADATA_MAX)
            if commits:
                consumer.commit(offsets=commits, asynchronous=False)

        for n, record in enumerate(_read(consumer, starts, ends, timeout), start=1):
            seen[record.tp].append(record.offset)
            destination = to_topic or record.original_topic
            if record.offset in done[record.tp]:
                report.already_done += 1
            elif flt is not None and not flt.matches(record):
                report.skipped += 1
            elif reason := park_reason(record, destination, topics, max_redrives):
                park(record, reason)
            elif dry_run:
                entry = {"action": "would-redrive", **record.summary(), "to_topic": destination}
                report.redriven.append(entry)
                audit.write(entry)
            else:
                entry = {"action": "redriven", **record.summary(), "to_topic": destination,
                         "redrive_count": record.redrive_count + 1}  # fmt: skip
                batch.append((record, entry))
                if len(batch) >= REDRIVE_BATCH:
                    send_batch()
            if on_progress is not None:
                on_progress(n, total)
        if batch:
            send_batch()
        final = _commits(seen, done, ends, limit=KAFKA_METADATA_MAX)  # read to the end: commit past parked-free tails too
        if final and not dry_run:
            consumer.commit(offsets=final, asynchronous=False)
    finally:
        consumer.close()
    return report


def _commits(seen: dict[kafka_admin.TP, list[int]], done: dict[kafka_admin.TP, set[int]], positions: dict[kafka_admin.TP, int],
             limit: int = MAX_METADATA_CHARS) -> list[TopicPartition]:
    """Offsets + handled-ranges metadata to commit for each partition read up to `positions`.
    Before producing, `limit` keeps room for records the broker may still refuse (parked,
    they split a range); after, the broker's own limit applies."""
    commits = []
    for tp, offs in seen.items():
        if not offs or tp not in positions:
            continue
        commit, remember = advance(offs, done[tp], positions[tp])
        metadata = encode_ranges(remember)
        if len(metadata) > limit:
            raise OpsError(f"too many scattered handled records on {tp} to remember; redrive without a filter")
        commits.append(TopicPartition(tp[0], tp[1], commit, metadata=metadata))
    return commits
