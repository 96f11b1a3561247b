"""Tenants against the real broker: the same user id in two tenants (and in none) is three users, with
their own profiles, dedupe, forgets and limits; records without a tenant are unchanged."""

from __future__ import annotations

import json

import msgspec
import pytest

from prefstream.models.backends.ledger import parse_ledger
from tests.streams.harness import (
    CI_WORKER_ENV, ProfileLog, Producer, TopicReader, Worker, dead_letters, event, forget, wait_for,
)  # fmt: skip

SETTLE_S = 60.0
IDS = [f"e{i}" for i in range(4)]


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    # Tenant `tight` may send about one event per 1000 s to a worker: its second event on is over the limit.
    return {**test_env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": "3",
            "PREFSTREAM_TENANT_LIMITS": json.dumps({"tight": {"events_per_s": 0.001}})}  # fmt: skip


def send(producer: Producer, tenant: str | None, value: dict[str, object]) -> None:
    """Send as a tenant's producer would: `tenant` in the event, key `tenant/user_id`."""
    user = str(value["user_id"])
    if tenant is None:
        producer.send(value)
    else:
        producer.send({**value, "tenant": tenant, "schema_version": 2}, key=f"{tenant}/{user}".encode())


@pytest.mark.timeout(240)
def test_two_tenants_with_the_same_user_id_are_kept_apart(env: dict[str, str], worker: Worker) -> None:
    """shop/u1, news/u1 and u1 (no tenant) get separate profiles from the same event ids; a forget of
    shop/u1 leaves the others; a tenant over its rate limit is dead-lettered with its code, the others are
    not; the read API takes the tenant; a record without a tenant has no `tenant` field and version 1."""
    bootstrap, partitions = env["KAFKA_BOOTSTRAP_SERVERS"], int(env["PREFSTREAM_PARTITIONS"])
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], partitions)
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    tenants: list[str | None] = ["shop", "news", None]
    for tenant in tenants:
        for eid in IDS:  # the same event ids in every tenant: dedupe is per user key, so none is a duplicate
            send(producer, tenant, event("u1", eid))
    producer.flush()
    keys = {"shop": "shop/u1", "news": "news/u1", None: "u1"}

    def applied(key: str, n: int, epoch: int = 1) -> bool:
        p = profiles.last(key)
        return p is not None and p.epoch == epoch and p.events_applied == n

    wait_for(lambda: (profiles.poll(), all(applied(k, 4) for k in keys.values()))[1], SETTLE_S, "three profiles",
             lambda: (profiles.by_user, worker.tail()))  # fmt: skip
    for tenant, key in keys.items():
        p = profiles.last(key)
        assert p is not None and p.user_id == "u1" and parse_ledger(p.summary) == IDS
        assert (p.tenant if tenant else None, p.schema_version) == (tenant, 2 if tenant else 1)
    raw = [r.value for r in profiles.reader.poll() if r.key == b"u1" and r.value]
    assert raw and all(b"tenant" not in v and msgspec.json.decode(v)["schema_version"] == 1 for v in raw)

    # The read API: by tenant, without one, and a malformed tenant.
    status, body = worker.get("/profiles/u1?tenant=news")
    assert status == 200 and json.loads(body)["tenant"] == "news"
    status, body = worker.get("/profiles/u1")
    assert status == 200 and "tenant" not in json.loads(body)
    assert worker.get("/profiles/u1?tenant=no/slash")[0] == 400
    assert worker.get("/profiles/u1?tenant=other")[0] == 404

    # A forget is scoped to its tenant.
    send(producer, "shop", forget("u1", "gdpr-1"))
    send(producer, "news", event("u1", "e-after"))
    producer.flush()
    wait_for(lambda: (profiles.poll(), profiles.by_user["shop/u1"][-1] is None and applied("news/u1", 5))[1],
             SETTLE_S, "forget of shop/u1 only", lambda: (profiles.by_user, worker.tail()))  # fmt: skip
    assert profiles.by_user["news/u1"].count(None) == 0 and profiles.by_user["u1"].count(None) == 0
    assert worker.get("/profiles/u1?tenant=shop")[0] == 404 and worker.get("/profiles/u1?tenant=news")[0] == 200

    # Limits are per tenant: `tight` gets one event in, the rest are dead-lettered; `shop` is unaffected.
    for i in range(5):
        send(producer, "tight", event("u1", f"t{i}"))
    for i in range(4):
        send(producer, "shop", event("u1", f"s{i}"))
    producer.flush()
    dlq = TopicReader(bootstrap, env["PREFSTREAM_DLQ_TOPIC"])
    wait_for(lambda: len(dlq.poll()) >= 4, SETTLE_S, "rate-limited dead letters", worker.tail)
    letters = dead_letters(dlq)
    assert [d["code"] for d in letters] == ["tenant_rate_limited"] * 4
    assert all(d["key"] == b"tight/u1" for d in letters)
    wait_for(lambda: (profiles.poll(), applied("shop/u1", 4, epoch=2))[1], SETTLE_S, "shop's new epoch",
             lambda: profiles.by_user.get("shop/u1"))  # fmt: skip
    labels = 'reason="tenant_rate_limited",tenant="tight"'
    # Counted right after the broker confirmed the dead letter: wait for the count, not just the letters.
    wait_for(lambda: worker.metric("prefstream_tenant_events_rejected_total", labels) == 4, 20, "rejections counted",
             lambda: worker.metric("prefstream_tenant_events_rejected_total", labels))  # fmt: skip
    assert worker.metric("prefstream_tenant_events_accepted_total", 'tenant="_none"') == len(IDS)
