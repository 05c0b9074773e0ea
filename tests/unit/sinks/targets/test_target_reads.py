"""The targets' read side against the emulators (both clients): pages, one record, deletes,
drift made behind syncflow's back with /_emulator/tamper, and a forced resend that the target
applies again where the plain idempotency key would be answered from its store."""

from __future__ import annotations

import aiohttp
import pytest

from syncflow.emulators.targets import emulator_state, emulator_url, start_target_emulator
from syncflow.errors import RateLimitedError
from syncflow.sinks.targets import Delivery, Lessen360TargetClient, OneClient
from syncflow.sinks.targets.base import payload_hash
from syncflow.settings import TargetSettings

CASES = {
    "one": (OneClient, {"propertyCode": "P1", "kind": "unit"}),
    "lessen360": (Lessen360TargetClient, {"property_code": "P1", "location_kind": "unit"}),
}


@pytest.mark.parametrize("target", sorted(CASES))
async def test_read_side_serves_what_was_applied_and_what_was_tampered(target: str) -> None:
    client_class, payload = CASES[target]
    runner = await start_target_emulator(target, credential="secret")
    try:
        url = emulator_url(runner)
        async with client_class(TargetSettings(base_url=url, api_key="secret", timeout_s=2.0)) as client:
            first = [Delivery("location", f"loc-{i}", 1, "upsert", "locations", {**payload, "name": f"n{i}"}) for i in range(5)]
            assert all(r.ok for r in await client.deliver(first))
            assert all(r.ok for r in await client.deliver(
                [Delivery("location", "loc-1", 2, "upsert", "locations", {**payload, "name": "two"}),
                 Delivery("location", "loc-4", 2, "delete", "locations", None)]))

            ids, cursor, pages = [], None, 0
            while True:
                page = await client.read_page("locations", cursor, 2)
                ids += [(r.external_id, r.version, r.deleted) for r in page.records]
                pages += 1
                if (cursor := page.next_cursor) is None:
                    break
            assert pages == 3 and ids == [("loc-0", 1, False), ("loc-1", 2, False), ("loc-2", 1, False),
                                          ("loc-3", 1, False), ("loc-4", 2, True)]
            one = await client.read_record("locations", "loc-1")
            assert one is not None and one.payload == {**payload, "name": "two"} and one.target_ref
            assert one.content_hash == payload_hash({"name": "two", **payload})  # key order does not matter
            assert await client.read_record("locations", "loc-9") is None

            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/_emulator/tamper", json=[
                    {"action": "lose", "collection": "locations", "external_id": "loc-0"},
                    {"action": "corrupt", "collection": "locations", "external_id": "loc-2", "fields": {"name": "x"}},
                    {"action": "rollback", "collection": "locations", "external_id": "loc-1"},
                    {"action": "rollback", "collection": "locations", "external_id": "loc-4"},
                ]) as resp:
                    assert resp.status == 200
                async with http.post(f"{url}/_emulator/tamper", json={"action": "rollback", "collection": "locations",
                                                                       "external_id": "loc-3"}) as resp:
                    assert resp.status == 400  # no older version
                async with http.post(f"{url}/_emulator/tamper", json={"action": "lose", "collection": "locations",
                                                                       "external_id": "loc-0"}) as resp:
                    assert resp.status == 404
            assert await client.read_record("locations", "loc-0") is None
            corrupted = await client.read_record("locations", "loc-2")
            assert corrupted is not None and (corrupted.version, corrupted.payload["name"]) == (1, "x")
            rolled = await client.read_record("locations", "loc-1")
            assert rolled is not None and (rolled.version, rolled.payload["name"]) == (1, "n1")
            undeleted = await client.read_record("locations", "loc-4")
            assert undeleted is not None and (undeleted.version, undeleted.deleted) == (1, False)
            assert len(emulator_state(runner).received) == 7  # tampering is not a request

            # the plain key again: answered from the idempotency store, nothing applied
            again = Delivery("location", "loc-2", 1, "upsert", "locations", {**payload, "name": "n2"})
            assert (await client.deliver([again]))[0].ok
            assert (await client.read_record("locations", "loc-2")).payload["name"] == "x"
            # a forced resend of the same version: applied, version read from its key
            forced = Delivery("location", "loc-2", 1, "upsert", "locations", {**payload, "name": "n2"}, resend="heal-1")
            assert forced.idempotency_key == "loc-2:1/heal-1"
            assert (await client.deliver([forced]))[0].ok
            healed = await client.read_record("locations", "loc-2")
            assert healed is not None and (healed.version, healed.payload["name"]) == (1, "n2")
            assert emulator_state(runner).received[-1].version == 1

            emulator_state(runner).set_faults({"next_429": 1, "retry_after_s": 3})
            with pytest.raises(RateLimitedError) as caught:
                await client.read_page("locations", None, 10)
            assert caught.value.retry_after == 3
    finally:
        await runner.cleanup()
