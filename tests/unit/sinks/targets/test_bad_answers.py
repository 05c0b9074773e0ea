"""Target clients against emulators that spoil their answers (emulators' answer_modes): every
odd answer becomes a typed error on its own record, with a reason a person can read, and the
records around it are delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from syncflow.emulators.targets import emulator_state, emulator_url, start_target_emulator
from syncflow.errors import BadAnswerError, PermanentTargetError, TransientTargetError, UnusableAnswerError
from syncflow.sinks.targets import Delivery, Lessen360TargetClient, OneClient, error_for
from syncflow.sinks.targets.base import parse_answer, readable, target_ref_of
from syncflow.settings import TargetSettings


def one_loc(n: int) -> Delivery:
    return Delivery("location", f"loc-{n}", 1, "upsert", "locations", {"propertyCode": "P1", "kind": "unit"})


def l360_loc(n: int) -> Delivery:
    return Delivery("location", f"loc-{n}", 1, "upsert", "locations", {"property_code": "P1", "location_kind": "unit"})


@pytest.fixture
async def one_emulator() -> AsyncIterator[web.AppRunner]:
    runner = await start_target_emulator("one")
    yield runner
    await runner.cleanup()


@pytest.fixture
async def lessen_emulator() -> AsyncIterator[web.AppRunner]:
    runner = await start_target_emulator("lessen360")
    yield runner
    await runner.cleanup()


def settings_for(runner: web.AppRunner, **kw: object) -> TargetSettings:
    return TargetSettings(base_url=emulator_url(runner), timeout_s=5.0, **kw)


@pytest.mark.parametrize(("mode", "error_class", "words"), [
    ("bad_charset", BadAnswerError, "not valid utf-8"),
    ("html", BadAnswerError, "not JSON (text/html)"),
    ("huge", BadAnswerError, "larger than 1048576 bytes"),
    ("odd_status", BadAnswerError, "999 is not an HTTP status"),
    ("garbage_status", TransientTargetError, "no usable answer"),
    ("item_not_object", BadAnswerError, "not an object"),
    ("long_ref", None, ""),  # a long id is the worker's concern (its column), not the client's
])
async def test_one_client_classifies_each_spoiled_answer_on_its_record(one_emulator, mode, error_class, words) -> None:
    emulator_state(one_emulator).set_faults({"answer_modes": {"loc-1": mode}})
    async with OneClient(settings_for(one_emulator)) as client:
        results = await client.deliver([one_loc(0), one_loc(1), one_loc(2)])
    assert [r.ok for r in (results[0], results[2])] == [True, True]
    bad = results[1]
    if error_class is None:
        assert bad.ok and bad.target_ref is not None and len(bad.target_ref) > 300
        return
    assert isinstance(bad.error, error_class), bad.error
    assert words in str(bad.error)
    assert len(str(bad.error)) < 1200 and "\x00" not in str(bad.error)


@pytest.mark.parametrize(("mode", "words"), [
    ("item_not_object", "batch result 1 is not an object"),
    ("item_text_status", "batch result 1 has no usable status (http_status 'fine', status 'mostly')"),
    ("item_odd_status", "999 is not an HTTP status"),
    ("item_wrong_index", "batch result 1 says it answers operation 1001"),
])
async def test_lessen360_batch_result_of_the_wrong_shape_fails_only_its_record(lessen_emulator, mode, words) -> None:
    state = emulator_state(lessen_emulator)
    state.set_faults({"answer_modes": {"loc-1": mode}})
    async with Lessen360TargetClient(settings_for(lessen_emulator)) as client:
        results = await client.deliver([l360_loc(0), l360_loc(1), l360_loc(2)])
    assert state.counters["requests"] == 1  # one batch
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, BadAnswerError) and words in str(results[1].error), results[1].error
    assert results[0].target_ref and results[2].target_ref


@pytest.mark.parametrize(("mode", "words"), [
    ("bad_charset", "not valid utf-8"),
    ("html", "not JSON (text/html)"),
    ("huge", "larger than"),
    ("odd_status", "999 is not an HTTP status"),
])
async def test_lessen360_spoiled_batch_body_fails_that_batch_only(lessen_emulator, mode, words) -> None:
    emulator_state(lessen_emulator).set_faults({"answer_modes": {"loc-1": mode}})
    async with Lessen360TargetClient(settings_for(lessen_emulator, batch_max=1)) as client:
        results = await client.deliver([l360_loc(0), l360_loc(1), l360_loc(2)])
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, BadAnswerError) and words in str(results[1].error), results[1].error


async def test_the_emulator_refuses_an_unknown_answer_mode(one_emulator) -> None:
    async with aiohttp.ClientSession(base_url=emulator_url(one_emulator)) as s:
        async with s.post("/_emulator/faults", json={"answer_modes": {"loc-1": "explode"}}) as r:
            assert r.status == 400 and "answer_modes" in (await r.json())["error"]


def test_answer_parsing_and_status_mapping() -> None:
    ok = parse_answer(200, b'{"id": "x"}', True, "application/json", None, {}, 100)
    assert (ok.body, ok.problem) == ({"id": "x"}, None)
    latin = parse_answer(200, '{"id": "café"}'.encode("latin-1"), True, "application/json", "latin-1", {}, 100)
    assert latin.body == {"id": "café"} and latin.problem is None
    unknown = parse_answer(200, b"{}", True, "application/json", "klingon-8", {}, 100)
    assert "unknown charset 'klingon-8'" in (unknown.problem or "")
    deep = parse_answer(200, b"[" * 50_000, True, "application/json", None, {}, 100_000)
    assert "not JSON" in (deep.problem or "")
    assert parse_answer(204, b"", True, "", None, {}, 100).body == {}
    assert isinstance(error_for(302, "moved"), PermanentTargetError)
    assert isinstance(error_for(102, "processing"), BadAnswerError)
    assert isinstance(error_for(999, "?"), BadAnswerError)
    assert readable("a\x00b\ud800c") == "a\\0b\\ud800c"
    assert readable("x" * 600).endswith("(600 characters)")
    assert target_ref_of(12) == "12" and target_ref_of(None) is None
    with pytest.raises(UnusableAnswerError):
        target_ref_of({"nested": True})
