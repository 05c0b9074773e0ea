"""The protections the suite must defend, each as a small patch that breaks it.

`tests/mutations/run.py` applies each patch in turn to a copy of the repository and runs the
tests named beside it; every patch must turn them red. A patch is (name, file, old text,
new text, test node ids): `old` must occur exactly once in `file` (an `old` of whole lines
may sit at another indentation there; `new` is shifted with it).

Kept short on purpose: the guarantees that lose or duplicate data when they break."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


_STUCK_WORKER = "tests/integration/agents/test_poison.py::test_a_worker_whose_batch_keeps_failing_still_stops_when_asked"
_SWEEPER = "tests/integration/agents/test_sync_in_handler.py::test_sweeper_publishes_versions_committed_but_never_published"
_OUTBOX_ACK = ("tests/integration/agents/test_outbox_acknowledged.py::"
               "test_a_version_kafka_did_not_acknowledge_stays_unpublished_until_one_it_did")
_REFUSED = ("tests/integration/agents/test_sync_in_handler.py::"
            "test_a_record_the_database_refuses_is_isolated_and_the_rest_of_its_batch_committed")
_CAS = ("tests/integration/agents/sync_out/test_sent_version_cas.py::"
        "test_an_older_version_is_not_sent_when_a_newer_one_was_claimed_meanwhile")
_BUCKET = "tests/integration/agents/sync_out/test_flow_control.py::test_limiter_is_shared_and_blocked_group_wide"
_TIERS = "tests/unit/agents/sync_out/test_decisions.py::test_transient_errors_climb_the_tiers_then_dlq"

MUTATIONS: tuple[Mutation, ...] = (
    # 1. manual acks: a batch is acked only after handle_until_done succeeded
    Mutation(
        "sync-in acks the batch before handling it",
        "syncflow/agents/sync_in.py",
        "            messages = [raw_message(e) for e in events]\n",
        "            messages = [raw_message(e) for e in events]\n"
        "            for event in events:\n"
        "                await stream.ack(event)\n",
        (_STUCK_WORKER,),
    ),
    Mutation(
        "sync-in acks a batch it gave up on",
        "syncflow/agents/sync_in.py",
        "        unacked.discard(event.message)\n",
        "        event.ack()\n",
        (_STUCK_WORKER,),
    ),
    # 2. the outbox: published_at is set only after Kafka acknowledged; the sweeper runs
    Mutation(
        "outbox marks versions published though Kafka did not acknowledge them",
        "syncflow/agents/outbox.py",
        "        self._producer.send_all(change_records(versions, self._codec, self._topic_for), timeout=self._send_timeout_s)\n",
        "        try:\n"
        "            self._producer.send_all(change_records(versions, self._codec, self._topic_for), timeout=self._send_timeout_s)\n"
        "        except Exception:\n"
        "            pass\n",
        (_OUTBOX_ACK,),
    ),
    Mutation(
        "outbox sweeper publishes nothing",
        "syncflow/agents/outbox.py",
        "        total = 0\n        while True:\n",
        "        total = 0\n        while False:\n",
        (_SWEEPER,),
    ),
    Mutation(
        "outbox marks every unpublished version, not only the ones sent",
        "syncflow/sinks/common_db/repository.py",
        "update(_versions).where(_versions.c.id.in_(list(version_ids))).values(published_at=func.now())",
        "update(_versions).where(_versions.c.published_at.is_(None)).values(published_at=func.now())",
        (_OUTBOX_ACK,),
    ),
    # 3. a record the database refuses is isolated; the column checks refuse before the database
    Mutation(
        "every database error is an outage (data_refusal returns None)",
        "syncflow/sinks/common_db/refusals.py",
        '    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy',
        '    return None\n    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy',
        (_REFUSED,),
    ),
    Mutation(
        "the column checks find no problems",
        "syncflow/sinks/common_db/limits.py",
        "    problems: list[FieldError] = []\n    for field, value, limit in (\n",
        "    problems: list[FieldError] = []\n    return problems\n    for field, value, limit in (\n",
        ("tests/unit/sinks/test_limits.py::test_numbers_out_of_their_column_range",
         "tests/unit/sinks/test_limits.py::test_values_that_do_not_coerce_and_identities_too_long",
         "tests/integration/agents/test_sync_in_handler.py::"
         "test_a_value_longer_than_its_column_is_a_validation_error_naming_the_field"),
    ),
    # 4. the sent-version compare-and-set
    Mutation(
        "the sent-version write is not a compare-and-set (WHERE dropped)",
        "syncflow/sinks/common_db/target_state.py",
        "         WHERE s.sent_version <= excluded.sent_version AND s.synced_version < excluded.sent_version\n",
        "",
        (_CAS,),
    ),
    Mutation(
        "the claim's result is ignored (every version is sent)",
        "syncflow/agents/sync_out/batch.py",
        "        return grant, self.state.claim(granted)\n",
        "        self.state.claim(granted)\n"
        "        return grant, set(granted)\n",
        (_CAS,),
    ),
    # 5. the rate-limit bucket
    Mutation(
        "the bucket grants whatever is asked (acquire never waits)",
        "syncflow/sinks/common_db/rate_buckets.py",
        "ELSE LEAST(:n, FLOOR(cur.avail + 1e-9))::int END AS granted",
        "ELSE CAST(:n AS int) END AS granted",
        (_BUCKET,),
    ),
    Mutation(
        "the bucket's tokens never decrease",
        "syncflow/sinks/common_db/rate_buckets.py",
        "       SET tokens = g.avail - g.granted, refilled_at = g.refilled_at\n",
        "       SET tokens = g.avail, refilled_at = g.refilled_at\n",
        (_BUCKET,),
    ),
    # 6. retry-tier routing
    Mutation(
        "a transient failure goes to the DLQ",
        "syncflow/agents/sync_out/decisions.py",
        "        if n > tiers:\n            return DLQ\n",
        "        if n >= 1:\n            return DLQ\n",
        (_TIERS,
         "tests/integration/agents/sync_out/test_delivery.py::test_transient_failures_retry_then_deliver"),
    ),
    Mutation(
        "a transient failure goes to the same tier again instead of the next",
        "syncflow/agents/sync_out/decisions.py",
        '        return Route("retry", n, settings.retry_delays_s[n - 1])\n',
        '        same = max(n - 1, 1)\n'
        '        return Route("retry", same, settings.retry_delays_s[same - 1])\n',
        (_TIERS,),
    ),
)
