"""Typed errors, every one under `SyncflowError`, grouped by what the caller must do:

- `BadInputError`: the record itself is at fault; route it to a DLQ and go on.
- `RetryLaterError`: an outage or an unreadable answer; the same work is tried again later
  (`retry_after` seconds when the other side said), never dead-lettered for it alone.
- `ConfigError`: settings, rules or a schema that cannot be used; refused at start-up.
- `OpsError`: an operations command cannot do what its user asked.

The class of an error decides where a record goes, so every failure that can reach a
routing decision is one of these. `category` names the kind in DLQ headers and logs
(docs/dead-letters.md lists every one)."""

from __future__ import annotations

from typing import Any


class SyncflowError(Exception):
    """Root of every error syncflow raises on purpose."""

    category: str = "internal"


class RetryLaterError(SyncflowError):
    """An outage of something the record needs (a store, the broker, the schema registry, a
    target): the record is fine; do the same work again later. `retry_after`: how long the
    failing side asked us to wait (seconds), None when it did not say."""

    category = "transient"
    retry_after: float | None = None

    def __init__(self, *args: object, retry_after: float | None = None):
        super().__init__(*args)
        if retry_after is not None:
            self.retry_after = retry_after


# -- input that can never succeed: route to a DLQ and go on ---------------------------
class BadInputError(SyncflowError):
    """The record itself is at fault; retrying cannot help."""

    category = "bad-input"


class DecodeError(BadInputError):
    """Bytes that are not a record of any known schema."""

    category = "decode"


class UnknownSchemaError(DecodeError):
    """A schema id or fingerprint that no registry or schema file knows."""

    category = "unknown-schema"


class ValidationError(BadInputError):
    """A record that breaks a validation rule. `errors` lists each failing rule."""

    category = "validation"

    def __init__(self, errors: list["FieldError"]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors) or "invalid record")

    @property
    def rule(self) -> str:
        return self.errors[0].rule if self.errors else ""


class FieldError:
    """One failed rule: which rule, on which field, with which value, and why."""

    __slots__ = ("rule", "field", "value", "reason")

    def __init__(self, rule: str, field: str, value: object, reason: str):
        self.rule, self.field, self.value, self.reason = rule, field, value, reason

    def to_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "field": self.field, "value": _short(self.value), "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.rule}: {self.field}={_short(self.value)!r} {self.reason}"

    def __repr__(self) -> str:
        return f"FieldError({self})"


def _short(value: object) -> object:
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    return value


# -- delivery to a target system -------------------------------------------------------
class TargetError(SyncflowError):
    """A target system call failed. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


class TransientTargetError(TargetError, RetryLaterError):
    """Timeouts, connection errors, 5xx: worth retrying later."""

    category = "transient"


class RateLimitedError(TransientTargetError):
    """429: the target asks the whole group to slow down for `retry_after` seconds."""

    category = "rate-limited"

    def __init__(self, message: str, retry_after: float, status: int | None = 429):
        self.retry_after = retry_after
        super().__init__(message, status)


class PermanentTargetError(TargetError):
    """4xx validation or auth errors: retrying the same request cannot succeed."""

    category = "permanent"


class BadAnswerError(TransientTargetError):
    """A target's answer syncflow cannot read (bad charset, not JSON, too large, an odd
    status, a batch result of the wrong shape): the outcome is unknown, so the record is
    tried again under the same idempotency key and lands in the DLQ after the last tier."""

    category = "bad-answer"


class UnusableAnswerError(PermanentTargetError):
    """A well-formed success whose content syncflow cannot keep (the target's id is too long
    or not text): the target answers the same on every retry, so the record goes to the DLQ."""

    category = "unusable-answer"


class DependencyNotMetError(SyncflowError):
    """The entity references another that the target does not hold yet."""

    category = "dependency"

    def __init__(self, missing: list[tuple[str, str]]):
        self.missing = missing
        super().__init__("waiting for " + ", ".join(f"{t}:{i}" for t, i in missing))


# -- sources ---------------------------------------------------------------------------
class SourceError(SyncflowError):
    """A source system call failed."""


class TransientSourceError(SourceError, RetryLaterError):
    category = "transient"


class MalformedResponseError(TransientSourceError):
    """A body that cannot be read (truncated JSON or XML): worth asking again."""


class PermanentSourceError(SourceError):
    """Bad credentials, an unknown property: reported, not retried."""

    category = "permanent"


class ConfigError(SyncflowError):
    """Settings or a rules file that cannot be used; refused at start-up."""

    category = "config"


class UnknownEntityError(ConfigError, KeyError):
    """A (source, entity type) pair that has no native schema (a KeyError too, for callers
    that look pairs up)."""


# -- Avro serialization ----------------------------------------------------------------
class EncodeError(BadInputError):
    """A record that does not fit the schema it is to be written with."""

    category = "encode"


class SchemaMismatchError(DecodeError):
    """Data whose writer schema cannot be resolved to the requested reader schema."""

    category = "schema-mismatch"


class SchemaRegistryUnavailableError(RetryLaterError):
    """The schema registry did not answer; worth retrying later."""

    category = "transient"


class SchemaRegistrationError(ConfigError):
    """The schema registry refused a schema (e.g. incompatible with the subject's history)."""


# -- operations commands ---------------------------------------------------------------
class OpsError(SyncflowError):
    """An operations command cannot do what was asked (unknown topic, bad argument)."""

    category = "ops"


class GroupActiveError(OpsError):
    """The consumer group has live members; its offsets cannot be changed under them."""

    def __init__(self, group: str, members: int):
        self.group, self.members = group, members
        super().__init__(f"consumer group {group!r} has {members} active member(s); stop them first")


class TablesMissingError(OpsError):
    """The common database tables `status` reads do not exist (yet) in the schema."""


# -- sync-in ---------------------------------------------------------------------------
class RawKeyError(BadInputError):
    """A raw record whose key is not `<entity_type>:<source_id>` (or whose topic names no source)."""

    category = "bad-key"


class RawDocumentRejected(BadInputError):
    """The raw store refused a document (a value the server cannot hold)."""

    category = "raw-store-rejected"


class DatabaseRefusedError(BadInputError):
    """PostgreSQL refused one record for its data (SQLSTATE class 22 or 23) where no rule
    caught it first; `sqlstate` and, when the server names it, `column` say what."""

    category = "database-refused"

    def __init__(self, message: str, sqlstate: str | None = None, column: str | None = None):
        self.sqlstate, self.column = sqlstate, column
        super().__init__(message)


class TooLargeError(BadInputError):
    """A record (or the change event it would make) larger than a Kafka record may be."""

    category = "too-large"

    def __init__(self, message: str, size: int, limit: int):
        self.size, self.limit = size, limit
        super().__init__(message)


class NotAcknowledgedError(RetryLaterError):
    """The broker did not acknowledge some records within the timeout. `failures`: each
    (outgoing record, Kafka error or None) not acknowledged."""

    def __init__(self, failures: list[tuple[Any, Any]]):
        self.failures = failures
        first = failures[0][1]
        super().__init__(f"{len(failures)} record(s) not acknowledged: {first}")


# -- sync-out ----------------------------------------------------------------------------
class LocksLostError(RetryLaterError):
    """The lock session no longer holds an entity's lock (it was lost with its connection):
    the batch is tried again on a new session, nothing is sent meanwhile."""


class TransformError(BadInputError):
    """A snapshot the target's rules cannot turn into a payload."""

    category = "transform"


class BadChangeEventError(BadInputError):
    """A decoded change event sync-out cannot use (bad snapshot JSON, missing identity)."""

    category = "bad-change-event"


class RecordCrashError(BadInputError):
    """Decoding, the rules or the database failed on one record in a way no typed error
    describes; the record is routed to the DLQ with the original exception's text."""

    category = "record-crash"
