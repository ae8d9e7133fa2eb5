"""The Durable Streams protocol under /ds/ on a real uvicorn server and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import sqlalchemy as sa

from broker.store.postgres import Store
from broker.web.auth import mint_token
from broker.web.settings import Settings
from durable.offsets import offset_of, seq_of
from tests.e2e.test_subscribe_support import running_broker

BASE = "/ds/v1/stream"


def _name() -> str:
    return f"{BASE}/s-{uuid.uuid4().hex[:12]}"


async def test_create_append_read_head_delete_round_trip(settings: Settings) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        path = _name()
        created = await client.put(path, content=b"hello", headers={"content-type": "text/plain"})
        assert created.status_code == 201
        assert created.headers["stream-next-offset"] == offset_of(1)
        again = await client.put(path, headers={"content-type": "text/plain"})
        assert again.status_code == 200
        appended = await client.post(
            path, content=b" world", headers={"content-type": "text/plain"}
        )
        assert appended.status_code == 204
        assert seq_of(appended.headers["stream-next-offset"]) == 2
        read = await client.get(path, params={"offset": "-1"})
        assert read.content == b"hello world"
        assert read.headers["stream-up-to-date"] == "true"
        tail = await client.get(path, params={"offset": offset_of(1)})
        assert tail.content == b" world"
        cached = await client.get(
            path, params={"offset": "-1"}, headers={"if-none-match": read.headers["etag"]}
        )
        assert cached.status_code == 304
        head = await client.head(path)
        assert head.headers["stream-next-offset"] == offset_of(2)
        assert (await client.delete(path)).status_code == 204
        assert (await client.get(path)).status_code == 404
        assert (await client.delete(path)).status_code == 404


async def test_json_mode_flattens_arrays_and_refuses_bad_json(settings: Settings) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        path = _name()
        json_ct = {"content-type": "application/json"}
        assert (await client.put(path, content=b"[]", headers=json_ct)).status_code == 201
        await client.post(path, content=b'[{"a":1},{"b":2}]', headers=json_ct)
        await client.post(path, content=b'"three"', headers=json_ct)
        read = await client.get(path, params={"offset": "-1"})
        assert read.json() == [{"a": 1}, {"b": 2}, "three"]
        assert seq_of(read.headers["stream-next-offset"]) == 3
        assert (await client.post(path, content=b"[]", headers=json_ct)).status_code == 400
        assert (await client.post(path, content=b"{nope", headers=json_ct)).status_code == 400
        assert (await client.get(path, params={"offset": "-1"})).json()[-1] == "three"


@pytest.mark.parametrize(
    ("method", "headers", "params", "status"),
    [
        ("GET", {}, {"offset": "abc"}, 400),
        ("GET", {}, {"offset": ""}, 400),
        ("GET", {}, {"live": "long-poll"}, 400),
        ("PUT", {"stream-ttl": "10", "stream-expires-at": "2099-01-01T00:00:00Z"}, {}, 400),
        ("PUT", {"stream-ttl": "-1"}, {}, 400),
        ("PUT", {"stream-expires-at": "tomorrow"}, {}, 400),
        ("PUT", {"content-type": "application/json"}, {}, 409),
        ("POST", {"content-type": "application/json"}, {}, 409),
        ("POST", {"producer-id": "p"}, {}, 400),
    ],
)
async def test_bad_requests_are_refused_and_write_nothing(
    settings: Settings, method: str, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        path = _name()
        await client.put(path, content=b"x", headers={"content-type": "text/plain"})
        response = await client.request(method, path, headers=headers, params=params, content=b"y")
        assert response.status_code == status
        assert response.json()["error"]["message"]
        assert (await client.get(path, params={"offset": "-1"})).content == b"x"


async def test_idempotent_producer_stores_each_seq_once(settings: Settings) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        path = _name()
        await client.put(path, headers={"content-type": "text/plain"})

        def producer(epoch: int, seq: int) -> dict[str, str]:
            return {
                "content-type": "text/plain",
                "producer-id": "p1",
                "producer-epoch": str(epoch),
                "producer-seq": str(seq),
            }

        assert (await client.post(path, content=b"a", headers=producer(0, 0))).status_code == 200
        assert (await client.post(path, content=b"a", headers=producer(0, 0))).status_code == 204
        gap = await client.post(path, content=b"c", headers=producer(0, 2))
        assert gap.status_code == 409 and gap.headers["producer-expected-seq"] == "1"
        assert (await client.post(path, content=b"b", headers=producer(1, 0))).status_code == 200
        stale = await client.post(path, content=b"z", headers=producer(0, 1))
        assert stale.status_code == 403 and stale.headers["producer-epoch"] == "1"
        assert (await client.get(path, params={"offset": "-1"})).content == b"ab"


async def test_long_poll_wakes_on_append_and_times_out_with_204(settings: Settings) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon", ds_long_poll_s=0.5) as (
        _,
        client,
    ):
        path = _name()
        await client.put(path, content=b"a", headers={"content-type": "text/plain"})
        params = {"offset": offset_of(1), "live": "long-poll"}
        waiting = asyncio.create_task(client.get(path, params=params))
        await asyncio.sleep(0.05)
        await client.post(path, content=b"b", headers={"content-type": "text/plain"})
        woken = await waiting
        assert woken.status_code == 200 and woken.content == b"b"
        assert woken.headers["stream-cursor"]
        idle = await client.get(path, params={"offset": offset_of(2), "live": "long-poll"})
        assert idle.status_code == 204
        assert idle.headers["stream-next-offset"] == offset_of(2)


async def test_sse_follows_appends_until_the_stream_closes(settings: Settings) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        path = _name()
        await client.put(path, content=b"one", headers={"content-type": "text/plain"})

        async def read_all() -> str:
            params = {"offset": "-1", "live": "sse"}
            async with client.stream("GET", path, params=params) as response:
                assert response.headers["content-type"] == "text/event-stream"
                return (await response.aread()).decode()

        reading = asyncio.create_task(read_all())
        await asyncio.sleep(0.1)
        await client.post(path, content=b"two", headers={"content-type": "text/plain"})
        await client.post(path, headers={"stream-closed": "true"})
        text = await asyncio.wait_for(reading, 10)
        data = [
            line[5:] for line in text.splitlines() if line.startswith("data:") and "{" not in line
        ]
        assert data == ["one", "two"]
        assert '"streamClosed": true' in text


async def test_messages_are_encrypted_at_rest_and_bound_to_their_place(
    settings: Settings, store: Store
) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        path = _name()
        await client.put(path, content=b"top secret one", headers={"content-type": "text/plain"})
        await client.post(path, content=b"top secret two", headers={"content-type": "text/plain"})
        async with store.transaction() as conn:
            rows = (await conn.execute(sa.text("SELECT seq, payload FROM ds_messages"))).all()
            assert rows and all(b"secret" not in bytes(r.payload) for r in rows)
            # Swap the two rows' ciphertexts: reading must fail, never return swapped text.
            await conn.execute(
                sa.text(
                    "UPDATE ds_messages m SET payload = o.payload FROM ds_messages o "
                    "WHERE m.stream_id = o.stream_id AND m.seq <> o.seq"
                )
            )
        swapped = await client.get(path, params={"offset": "-1"})
        assert swapped.status_code == 500
        assert b"secret" not in swapped.content


async def test_auth_is_required_and_streams_are_per_workspace(settings: Settings) -> None:
    secret = settings.require(settings.secret, "BROKER_SECRET")
    async with running_broker(settings) as (_, client):
        path = _name()
        assert (await client.put(path)).status_code == 401
        store: Store = _.state.store
        a = {"authorization": f"Bearer {mint_token(secret, await store.ensure_workspace('a'))}"}
        b = {"authorization": f"Bearer {mint_token(secret, await store.ensure_workspace('b'))}"}
        assert (await client.put(path, content=b"mine", headers=a)).status_code == 201
        assert (await client.get(path, headers=b)).status_code == 404
        assert (await client.get(path, headers=a)).content == b"mine"
        bad = {"authorization": "Bearer not-a-token"}
        assert (await client.get(path, headers=bad)).status_code == 401


async def test_expired_streams_read_as_gone(settings: Settings) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        path = _name()
        past = {"content-type": "text/plain", "stream-expires-at": "2020-01-01T00:00:00Z"}
        await client.put(path, content=b"x", headers=past)
        assert (await client.get(path)).status_code == 404
        assert json.loads((await client.post(path, content=b"y", headers=past)).content)["error"]


async def test_a_fork_reads_its_source_up_to_the_fork_then_its_own(settings: Settings) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        source, fork = _name(), _name()
        text = {"content-type": "text/plain"}
        first = await client.put(source, content=b"first", headers=text)
        await client.post(source, content=b" second", headers=text)
        at = first.headers["stream-next-offset"]
        forked_from = {"stream-forked-from": source.removeprefix("/ds"), "stream-fork-offset": at}
        assert (await client.put(fork, headers={**text, **forked_from})).status_code == 201
        await client.post(fork, content=b" own", headers=text)
        assert (await client.get(fork, params={"offset": "-1"})).content == b"first own"
        assert (await client.get(source, params={"offset": "-1"})).content == b"first second"
        # The source is deleted but kept for its fork: 410 until the fork goes.
        assert (await client.delete(source)).status_code == 204
        assert (await client.get(source)).status_code == 410
        assert (await client.put(source, headers=text)).status_code == 409
        assert (await client.get(fork, params={"offset": "-1"})).content == b"first own"
        assert (await client.delete(fork)).status_code == 204
        assert (await client.put(source, headers=text)).status_code == 201


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"stream-forked-from": "/v1/stream/missing"}, 404),
        ({"stream-fork-offset": "nope", "stream-forked-from": "SOURCE"}, 400),
        ({"stream-fork-offset": offset_of(9), "stream-forked-from": "SOURCE"}, 400),
        ({"stream-fork-sub-offset": "1"}, 400),
        ({"stream-forked-from": "SOURCE", "content-type": "application/json"}, 409),
    ],
)
async def test_bad_forks_are_refused(
    settings: Settings, headers: dict[str, str], status: int
) -> None:
    async with running_broker(settings, ds_anonymous_workspace="anon") as (_, client):
        source = _name()
        await client.put(source, content=b"x", headers={"content-type": "text/plain"})
        given = {k: v.replace("SOURCE", source.removeprefix("/ds")) for k, v in headers.items()}
        answer = await client.put(_name(), headers=given)
        assert answer.status_code == status


async def test_an_append_on_one_replica_wakes_a_long_poll_on_another(settings: Settings) -> None:
    """The wake-up crosses processes through NOTIFY; the long-poll never reaches its 30 s."""
    async with (
        running_broker(settings, ds_anonymous_workspace="anon", ds_long_poll_s=30) as (_, one),
        running_broker(settings, ds_anonymous_workspace="anon") as (_, two),
    ):
        path = _name()
        await one.put(path, content=b"a", headers={"content-type": "text/plain"})
        params = {"offset": offset_of(1), "live": "long-poll"}
        waiting = asyncio.create_task(one.get(path, params=params))
        await asyncio.sleep(0.2)
        await two.post(path, content=b"b", headers={"content-type": "text/plain"})
        woken = await asyncio.wait_for(waiting, 10)
        assert woken.status_code == 200 and woken.content == b"b"
