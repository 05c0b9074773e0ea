"""Each source, end to end on the real broker: emulator -> connector -> raw.<source> ->
decoded records equal to what the emulator serves, across restarts, changes and faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from syncflow.roles.connector import run_connector
from syncflow.emulators.sources import Faults
from syncflow.streams import headers as h

from .conftest import emulator_truth, latest_by_key, read_topic, saved_cursors

pytestmark = pytest.mark.integration

SOURCES = ["yardi", "realpage", "insight", "lessen360"]


async def _changes(url: str, count: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/_emulator/changes", json={"count": count}) as r:
        assert r.status == 200
        return await r.json()


@pytest.mark.parametrize("source", SOURCES)
async def test_one_pass_puts_every_record_on_the_raw_topic(source, start_emulator, source_settings) -> None:
    emulator = await start_emulator(source)
    settings = source_settings(source, emulator.url)
    stats = await run_connector(settings, source, once=True)

    truth = await emulator_truth(emulator)
    messages = read_topic(settings, settings.connectors.sources[source].topic)
    assert stats.errors == 0, stats.error_messages
    assert stats.records_published == len(messages) >= len(truth) > 10
    assert latest_by_key(settings, messages) == truth
    batch_numbers = {m.headers[h.BATCH_NUMBER] for m in messages}
    assert len(batch_numbers) == 1
    assert all(m.headers[h.SOURCE_SYSTEM] == source for m in messages)
    assert all(m.key.startswith(m.headers[h.ENTITY_TYPE] + ":") for m in messages)
    assert len({m.headers[h.TRACE_ID] for m in messages}) == len(messages)
    assert all(m.headers[h.EXTRACTION_TIME].endswith("+00:00") for m in messages)


@pytest.mark.parametrize("source", SOURCES)
async def test_restart_mid_run_with_changes_loses_nothing(source, start_emulator, source_settings) -> None:
    emulator = await start_emulator(source)
    settings = source_settings(source, emulator.url)
    first = await run_connector(settings, source, once=True, max_pages=2)
    assert first.stopped_early and first.pages == 2
    saved = saved_cursors(settings, source)
    assert saved, "the acknowledged pages' cursors are saved"

    await _changes(emulator.url, 25)  # updates, deletes and new records while stopped
    second = await run_connector(settings, source, once=True)
    await _changes(emulator.url, 15)
    third = await run_connector(settings, source, once=True)

    truth = await emulator_truth(emulator)
    messages = read_topic(settings, settings.connectors.sources[source].topic)
    assert second.errors == third.errors == 0
    assert latest_by_key(settings, messages) == truth
    # incremental: the third pass reads about the changes (plus the overlap), not everything again
    assert third.records_published < len(truth)


@pytest.mark.parametrize("source", SOURCES)
async def test_passes_without_changes_publish_nothing_again(source, start_emulator, source_settings) -> None:
    """The overlap window is re-read every pass, but what was already published unchanged
    is not produced again; a change made afterwards still is."""
    emulator = await start_emulator(source)
    settings = source_settings(source, emulator.url)
    first = await run_connector(settings, source, once=True)
    idle = [await run_connector(settings, source, once=True) for _ in range(2)]
    assert [s.records_published for s in idle] == [0, 0] and all(s.errors == 0 for s in idle)
    topic = settings.connectors.sources[source].topic
    assert len(read_topic(settings, topic)) == first.records_published

    await _changes(emulator.url, 5)
    changed = await run_connector(settings, source, once=True)
    assert 0 < changed.records_published
    assert latest_by_key(settings, read_topic(settings, topic)) == await emulator_truth(emulator)


@pytest.mark.parametrize("source", SOURCES)
async def test_transient_faults_are_retried_and_nothing_is_lost(source, start_emulator, source_settings) -> None:
    faults = Faults(error_rate=0.2, malformed_rate=0.2, timeout_rate=0.05, latency_ms=5, timeout_s=3.0)
    emulator = await start_emulator(source, faults=faults)
    settings = source_settings(source, emulator.url, request_timeout_s=0.5, retry_attempts=12)
    await run_connector(settings, source, once=True)

    truth = await emulator_truth(emulator)
    messages = read_topic(settings, settings.connectors.sources[source].topic)
    assert latest_by_key(settings, messages) == truth
    injected = emulator.state.stats
    assert injected["errors"] + injected["malformed"] + injected["timeouts"] > 0


@pytest.mark.parametrize("source", SOURCES)
async def test_bad_credentials_are_reported_and_nothing_is_published(source, start_emulator, source_settings) -> None:
    emulator = await start_emulator(source)
    settings = source_settings(source, emulator.url, api_key="wrong-key")
    stats = await run_connector(settings, source, once=True)
    assert stats.errors >= 1 and stats.records_published == 0
    assert any("Invalid Username/Password" in m or "credentials rejected" in m for m in stats.error_messages)
    assert read_topic(settings, settings.connectors.sources[source].topic) == []


@pytest.mark.parametrize("source", ["yardi", "realpage"])
async def test_unknown_property_is_reported_and_the_others_are_served(source, world, start_emulator,
                                                                     source_settings) -> None:
    emulator = await start_emulator(source)
    known = world.properties(source)[0].data["property_code"]
    settings = source_settings(source, emulator.url, properties=["nosuch99", known])
    stats = await run_connector(settings, source, once=True)

    assert stats.errors >= 1 and all("nosuch99" in m for m in stats.error_messages)
    truth = {k: v for k, v in (await emulator_truth(emulator)).items()
             if (v.get("PropertyCode") or v.get("propertyCode")) == known}
    messages = read_topic(settings, settings.connectors.sources[source].topic)
    assert latest_by_key(settings, messages) == truth


async def wait_until(condition: Callable[[], Awaitable[bool]], task: asyncio.Task[Any], what: str,
                     timeout: float = 60.0) -> None:
    """Poll `condition` while `task` runs; fail when the task ended or the time is up."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if task.done():
            task.result()  # raises what ended it
            pytest.fail(f"the connector returned before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_continuous_run_picks_up_changes_and_stops_on_request(start_emulator, source_settings) -> None:
    emulator = await start_emulator("insight")
    settings = source_settings("insight", emulator.url)
    topic = settings.connectors.sources["insight"].topic

    async def on_topic(truth: dict[str, Any]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return latest_by_key(settings, await asyncio.to_thread(read_topic, settings, topic)) == truth
        return check

    stop = asyncio.Event()
    task = asyncio.create_task(run_connector(settings, "insight", stop=stop))
    await wait_until(await on_topic(await emulator_truth(emulator)), task, "the first pass on the topic")
    await _changes(emulator.url, 10)
    truth = await emulator_truth(emulator)
    await wait_until(await on_topic(truth), task, "a later pass with the changes")  # no restart: the run found them
    stop.set()
    stats = await asyncio.wait_for(task, 30)
    assert stats.passes >= 2
    assert latest_by_key(settings, read_topic(settings, topic)) == truth


@pytest.mark.parametrize("source", SOURCES)
async def test_records_changing_while_the_connector_pages_are_not_skipped(source, start_emulator,
                                                                         source_settings) -> None:
    """Updates during a pass move records behind the pages already read; the next pass
    must still find them (no gap at the cursor boundary)."""
    import asyncio

    emulator = await start_emulator(source, faults=Faults(latency_ms=15))
    settings = source_settings(source, emulator.url, page_size=3)

    async def keep_changing() -> None:
        for _ in range(15):
            await _changes(emulator.url, 3)
            await asyncio.sleep(0.03)

    changer = asyncio.create_task(keep_changing())
    during = await run_connector(settings, source, once=True)
    await changer
    after = await run_connector(settings, source, once=True)

    truth = await emulator_truth(emulator)
    assert during.errors == after.errors == 0
    assert latest_by_key(settings, read_topic(settings, settings.connectors.sources[source].topic)) == truth


@pytest.mark.parametrize("source", ["yardi", "realpage"])
async def test_a_connector_cancelled_at_any_moment_resumes_without_loss(source, start_emulator,
                                                                       source_settings) -> None:
    emulator = await start_emulator(source, faults=Faults(latency_ms=400))
    settings = source_settings(source, emulator.url, page_size=2)  # passes long enough to cut: pages of 2, 400 ms each
    task = asyncio.create_task(run_connector(settings, source, once=True))
    # cancelled once some pages are acknowledged and the pass is still running
    await wait_until(lambda: asyncio.sleep(0, bool(saved_cursors(settings, source))),
                     task, "a first acknowledged page")
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    partial = saved_cursors(settings, source)
    await _changes(emulator.url, 10)
    await run_connector(settings, source, once=True)

    truth = await emulator_truth(emulator)
    assert latest_by_key(settings, read_topic(settings, settings.connectors.sources[source].topic)) == truth
    # the second pass went on from there: every stream the first saved still has a cursor, and
    # cursors moved (with streams read concurrently, the cancelled pass may already have saved
    # one for every stream, so their number need not grow)
    after = saved_cursors(settings, source)
    assert after.keys() >= partial.keys() and after != partial


async def test_records_that_fit_no_schema_go_to_the_dead_letter_topic(source_settings) -> None:
    from syncflow.connectors.publish import RawPublisher, Reject
    from syncflow.errors import ValidationError
    from syncflow.streams.dead_letters import read_failure_headers
    from syncflow.streams.producer import ReliableProducer

    settings = source_settings("lessen360", "http://127.0.0.1:9")
    producer = ReliableProducer(settings)
    publisher = RawPublisher(settings, "lessen360", producer)
    good = {"attachmentId": "a1", "workOrderId": "WO-1", "updatedAtMs": 5}
    wrong_type = {"attachmentId": "a2", "workOrderId": "WO-1", "updatedAtMs": "yesterday"}
    unreadable = Reject(b"<not json", ValidationError([]), "attachment")
    result = publisher.publish("attachment", [good, wrong_type], 77, [unreadable])
    producer.close()

    assert result.keys == ["attachment:a1"] and result.rejected == 2
    raw = read_topic(settings, settings.connectors.sources["lessen360"].topic)
    assert [m.key for m in raw] == ["attachment:a1"]
    dead = read_topic(settings, settings.connectors.dlq_topic)
    assert sorted(m.key or "-" for m in dead) == ["-", "attachment:a2"]
    for m in dead:
        failure = read_failure_headers([(k, v.encode()) for k, v in m.headers.items()])
        assert failure["original.topic"] == settings.connectors.sources["lessen360"].topic
        assert failure["error.category"] == "validation" and failure["rule"] == "schema"
        assert m.headers[h.BATCH_NUMBER] == "77"
    assert b"updatedAtMs" in next(m for m in dead if m.key).headers["syncflow.dlt.exception.message"].encode()


async def test_connector_metrics_and_health(start_emulator, source_settings) -> None:
    from prometheus_client import generate_latest

    from syncflow.connectors.observe import start_ops_server, worker_observer

    emulator = await start_emulator("realpage")
    settings = source_settings("realpage", emulator.url)
    observer = worker_observer(settings)
    stats = await run_connector(settings, "realpage", once=True, observer=observer)
    exposed = generate_latest(observer.registry).decode()
    topic = settings.connectors.sources["realpage"].topic
    assert (f'syncflow_records_processed_total{{group="connector.realpage",topic="{topic}"}} '
            f"{float(stats.records_published)}") in exposed
    assert 'syncflow_external_latency_seconds_count{operation="workorders",target="realpage"}' in exposed

    ops = await start_ops_server(observer, "127.0.0.1", 0)
    try:
        port = ops.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/ready") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert "syncflow_records_processed_total" in await resp.text()
    finally:
        await ops.cleanup()


async def test_broker_unreachable_keeps_the_cursor_and_a_later_run_loses_nothing(start_emulator,
                                                                                   source_settings) -> None:
    emulator = await start_emulator("lessen360")
    settings = source_settings("lessen360", emulator.url)
    down = settings.model_copy(update={
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "connectors": settings.connectors.model_copy(update={"ack_timeout_s": 1.0})})
    failed = await run_connector(down, "lessen360", once=True)
    # every stream being read when the broker refused counts its page (streams_in_flight)
    assert 1 <= failed.errors <= settings.connectors.sources["lessen360"].streams_in_flight
    assert failed.records_published == 0 and all("not acknowledged" in m for m in failed.error_messages)
    assert saved_cursors(settings, "lessen360") == {}

    await run_connector(settings, "lessen360", once=True)
    truth = await emulator_truth(emulator)
    assert latest_by_key(settings, read_topic(settings, settings.connectors.sources["lessen360"].topic)) == truth


@pytest.mark.parametrize("source", ["yardi", "realpage"])
async def test_through_the_schema_registry(source, start_emulator, source_settings) -> None:
    """With a registry configured, records go out in the Confluent wire format (Apicurio)."""
    import os

    from syncflow.streams.avro import registry_client
    from syncflow.settings import local_stack_dir

    env = "SYNCFLOW_LOCAL_SCHEMA_REGISTRY_URL"
    url = os.environ.get(env) or next(
        (line.split("=", 1)[1].strip() for line in (local_stack_dir() / "stack.env").read_text().splitlines()
         if line.startswith(env + "=")), "http://127.0.0.1:8081/apis/ccompat/v7")
    client = registry_client(url)
    try:
        client.get_subjects()
    except Exception as exc:  # noqa: BLE001 - say how to start it
        pytest.fail(f"schema registry at {url} does not answer ({exc}); start it with "
                    "`deploy/local/stack.sh up --with-registry`", pytrace=False)
    emulator = await start_emulator(source)
    settings = source_settings(source, emulator.url).model_copy(update={"schema_registry_url": url})
    topic = settings.connectors.sources[source].topic
    try:
        stats = await run_connector(settings, source, once=True)
        assert stats.errors == 0, stats.error_messages
        messages = read_topic(settings, topic)
        assert all(m.value[:1] == b"\x00" for m in messages)
        assert latest_by_key(settings, messages) == await emulator_truth(emulator)
    finally:
        for subject in client.get_subjects():
            if subject.startswith(f"{topic}-"):
                client.delete_subject(subject)


async def test_passes_start_every_poll_interval_however_long_a_pass_takes(start_emulator, source_settings) -> None:
    # Insight reads three feeds; at 0.3 s a request an idle pass takes about 0.9 s. Counted from
    # the previous pass's start, passes begin at 0, 1.5, 3 and 4.5 s; waiting the interval after
    # each pass instead, they begin at 0, 2.4 and 4.8 s, and only two have started after 4.6 s.
    emulator = await start_emulator("insight", faults=Faults(latency_ms=300))
    settings = source_settings("insight", emulator.url, poll_interval_s=1.5)
    stop = asyncio.Event()
    task = asyncio.create_task(run_connector(settings, "insight", stop=stop))
    await asyncio.sleep(4.6)
    stop.set()
    stats = await asyncio.wait_for(task, 30)
    assert stats.passes >= 3, f"{stats.passes} passes in 4.6 s at a 1.5 s poll interval"
