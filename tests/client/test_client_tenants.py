"""The client library with tenants (issue #12): builders, keys and partitions, the view, the read API and the CLI
take the tenant; the same user id in two tenants is two users end to end; without a tenant nothing changes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from prefstream.client import AsyncProducer, AsyncProfileApi, ClientConfig, ProfileApi, ProfileReader, Producer, events
from prefstream.client.api import _path
from prefstream.client.view import ProfileView
from prefstream.client.wire import validate
from prefstream.models.backends.ledger import parse_ledger
from prefstream.schemas.events import encode_event
from prefstream.schemas.keys import user_key
from prefstream.schemas.profiles import Profile, decode_profile, encode_profile
from prefstream.settings import LimitSettings
from prefstream.streams.partitioning import partition_for
from tests.streams.harness import TopicReader, Worker, wait_for

Cli = Callable[..., subprocess.CompletedProcess[str]]

#: The same user id in two tenants and in none: three users.
TENANTS: list[str | None] = ["shop", "news", None]
IDS = ["e-0", "e-1", "e-2"]
SETTLE_S = 90.0


def _profile(user: str, tenant: str | None, version: int) -> Profile:
    return Profile(schema_version=1 if tenant is None else 2, user_id=user, epoch=1, version=version,
                   summary=f"{tenant}/{user} {version}", events_applied=version, updated_at="2026-01-01T00:00:00.000Z",
                   last_event_ts="2026-01-01T00:00:00Z", model="m", prompt_version="p",
                   **({} if tenant is None else {"tenant": tenant}))  # type: ignore[arg-type]  # fmt: skip


def test_builders_take_a_tenant_and_omit_it_otherwise() -> None:
    """With `tenant=` an event carries it at schema_version 2 and is keyed `tenant/user_id`; without it the
    bytes have neither field (exactly the events of before tenants)."""
    limits = LimitSettings()
    built = [events.pair("u1", "e", chosen="a", rejected="b", tenant="shop"),
             events.text("u1", "e", text="t", tenant="shop"),
             events.rating("u1", "e", item="i", score=1, scale=5, tenant="shop"),
             events.forget("u1", "e", tenant="shop"),
             events.impression("u1", "e", shown=["i"], tenant="shop"),
             events.engagement("u1", "e", item="i", tenant="shop"),
             events.conversation("u1", "e", turns=[("user", "hi")], tenant="shop")]  # fmt: skip
    for event in built:
        prepared = validate(event, limits)
        assert (event.tenant, event.schema_version) == ("shop", 2)
        got = (prepared.key, prepared.user_key, prepared.tenant, prepared.user_id)
        assert got == (b"shop/u1", "shop/u1", "shop", "u1")
    plain = events.pair("u1", "e", chosen="a", rejected="b", ts=0)
    assert json.loads(encode_event(plain)) == {"kind": "pair", "event_id": "e", "user_id": "u1", "ts": 0, "chosen": "a",
                                               "rejected": "b"}  # fmt: skip
    assert (validate(plain, limits).key, validate(plain, limits).tenant) == (b"u1", None)


def test_view_keeps_tenants_apart() -> None:
    """The view holds profiles by message key: shop/u1, news/u1 and u1 are three users; a tombstone of one
    leaves the others; a record whose tenant or user_id is not its key's is skipped."""
    view = ProfileView()
    for tenant in TENANTS:
        change = view.apply(user_key(tenant, "u1").encode(), encode_profile(_profile("u1", tenant, 1)))
        assert change is not None and (change.tenant, change.user_id) == (tenant, "u1")
    assert [view.get("u1", t) for t in TENANTS] == [_profile("u1", t, 1) for t in TENANTS]
    assert sorted(view.users()) == ["news/u1", "shop/u1", "u1"]
    forgotten = view.apply(b"shop/u1", None)
    assert forgotten is not None and (forgotten.tenant, forgotten.user_id, forgotten.forgotten) == ("shop", "u1", True)
    assert view.get("u1", "shop") is None and view.get("u1", "news") == _profile("u1", "news", 1)
    for key, record in [(b"news/u1", _profile("u1", None, 2)), (b"u1", _profile("u1", "news", 2)),
                        (b"news/u1", _profile("u2", "news", 2))]:  # fmt: skip
        assert view.apply(key, encode_profile(record)) is None
    assert view.skipped == 3 and view.get("u1", "news") == _profile("u1", "news", 1)


def test_read_api_path_takes_the_tenant() -> None:
    """`?tenant=` is added only for a tenant's user; the user id stays one path segment."""
    assert _path("u1", None) == "/profiles/u1"
    assert _path("a@b/c", "shop") == "/profiles/a%40b%2Fc?tenant=shop"


@pytest.mark.kafka
def test_producers_partition_a_tenants_user_as_the_worker(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """Both producers store a tenant's event keyed `tenant/user_id` on `partition_for(tenant/user_id)`, the
    partition the worker owns for it (so it is never repartitioned)."""
    topic = kafka_topics(unique_name("events"), partitions=8)
    config = ClientConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PREFSTREAM_EVENTS_TOPIC": topic})
    users = [f"user-{i}" for i in range(12)]
    with Producer(config) as producer:
        sync = [producer.send(events.pair(u, f"s-{u}", chosen="a", rejected="b", tenant="shop")).result(30)
                for u in users]  # fmt: skip

    async def main() -> list[int]:
        async with AsyncProducer(config) as producer:
            return [(await producer.send_and_wait(events.forget(u, f"a-{u}", tenant="news"))).partition for u in users]

    assert [d.partition for d in sync] == [partition_for(f"shop/{u}", 8) for u in users]
    assert asyncio.run(main()) == [partition_for(f"news/{u}", 8) for u in users]
    assert [partition_for(f"shop/{u}", 8) for u in users] != [partition_for(u, 8) for u in users]  # the key matters
    reader = TopicReader(kafka_bootstrap, topic)
    try:
        wait_for(lambda: len(reader.poll()) == 2 * len(users), 30, "every event stored", lambda: len(reader.poll()))
        stored = {(r.key, r.partition) for r in reader.poll()}
    finally:
        reader.close()
    assert stored == {(f"{t}/{u}".encode(), partition_for(f"{t}/{u}", 8)) for t in ("shop", "news") for u in users}


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """The client tests' environment with 3 partitions: there u1, shop/u1 and news/u1 each have their own
    (with the default 2 of the tests they share one, and a wrong partitioner would go unnoticed)."""
    return {**env, "PREFSTREAM_PARTITIONS": "3"}


def _jsonl(path: Path, values: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(values) + b"\n")
    return path


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_tenants_with_the_same_user_id_through_the_client(cli: Cli, env: dict[str, str], worker: Worker,
                                                              tmp_path: Path) -> None:  # fmt: skip
    """The client sends u1 for shop and none, `prefstream produce` for news, all with the same event ids; the
    worker keeps three profiles, none repartitioned; the readers, both read-API clients, `profile --tenant`
    and `tail --tenant` return each tenant's own; a forget of shop/u1 leaves the others."""
    config = ClientConfig.from_env(env)
    with Producer(config) as producer:
        for tenant in ("shop", None):
            for eid in IDS:
                producer.send(events.pair("u1", eid, chosen=f"{tenant} a", rejected="b", tenant=tenant))
    lines = [encode_event(events.pair("u1", eid, chosen="news a", rejected="b", tenant="news")) for eid in IDS]
    done = cli("produce", str(_jsonl(tmp_path / "news.jsonl", lines)))
    assert done.returncode == 0, done.stderr

    with ProfileReader(config) as reader:
        def folded() -> bool:
            reader.poll(0.2)
            return all((p := reader.get("u1", t)) is not None and p.events_applied == len(IDS) for t in TENANTS)

        wait_for(folded, SETTLE_S, "three profiles", lambda: (reader.view.users(), worker.tail()))
        assert len({partition_for(user_key(t, "u1"), 3) for t in TENANTS}) == 3
        mine = {t: reader.get("u1", t) for t in TENANTS}
        assert worker.metric("prefstream_events_repartitioned_total", 'cause="partitioner"') == 0
        assert worker.metric("prefstream_events_repartitioned_total", 'cause="key"') == 0
        for tenant, p in mine.items():
            assert p is not None and p.user_id == "u1" and parse_ledger(p.summary) == IDS
            assert (p.tenant or None, p.schema_version) == (tenant, 2 if tenant else 1)
        with ProfileApi(worker.url) as api:
            assert {t: api.get("u1", t) for t in TENANTS} == mine

        async def from_async_api() -> dict[str | None, Profile | None]:
            async with AsyncProfileApi(worker.url) as api:
                return {t: await api.get("u1", t) for t in TENANTS}

        assert asyncio.run(from_async_api()) == mine
        for tenant in ("shop", "news"):
            done = cli("profile", "u1", "--tenant", tenant, "--json", "--api", worker.url)
            assert done.returncode == 0, done.stderr
            assert decode_profile(done.stdout.strip().encode()) == mine[tenant]
        done = cli("profile", "u1", "--tenant", "nobody", "--api", worker.url)
        assert done.returncode == 1 and "no profile for nobody/u1" in done.stderr, done.stderr
        done = cli("tail", "--from-beginning", "--json", "--tenant", "news", "--idle-exit", "3")
        tailed = [json.loads(line) for line in done.stdout.splitlines()]
        assert tailed and {(r["tenant"], r["user_id"]) for r in tailed} == {("news", "u1")}, done.stdout

        with Producer(config) as producer:
            producer.send(events.forget("u1", "forget-1", tenant="shop"))
        change = next(c for c in reader.changes(idle_timeout_s=SETTLE_S) if c.forgotten)
        assert (change.tenant, change.user_id) == ("shop", "u1")
        assert reader.get("u1", "shop") is None
        assert reader.get("u1", "news") == mine["news"] and reader.get("u1") == mine[None]
