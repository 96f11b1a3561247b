"""Event-time order against the real broker: one update reads its evidence in the order the events happened,
whatever path they came by, and events that happened before a forget never reach the new epoch."""

from __future__ import annotations

import pytest

from prefstream.models.backends.ledger import parse_ledger
from prefstream.schemas.profiles import Profile
from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, Worker, event, forget, wait_for

SETTLE_S = 60.0
T0 = 1_764_000_000_000


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    # Idle 1 s and at least 4 events: each user's out-of-order burst lands in one update.
    return {**test_env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": "3", "PREFSTREAM_FLUSH_MIN_EVENTS": "4",
            "PREFSTREAM_FLUSH_IDLE_S": "1.0", "PREFSTREAM_FLUSH_MAX_WAIT_S": "5"}  # fmt: skip


def batches(history: list[Profile | None]) -> list[list[str]]:
    """The event ids each update of one epoch added, from the ledger summaries of consecutive versions."""
    out, before = [], 0
    for p in history:
        if p is None:
            before = 0
            continue
        ids = parse_ledger(p.summary)
        out.append(ids[before:])
        before = len(ids)
    return out


@pytest.mark.timeout(180)
def test_events_from_two_paths_are_folded_in_event_time_order(env: dict[str, str], worker: Worker) -> None:
    """Events sent out of time order, some through a foreign partitioner (the repartition path), are folded
    once each, and every update lists its events by `ts` (ties by arrival)."""
    bootstrap, partitions = env["KAFKA_BOOTSTRAP_SERVERS"], int(env["PREFSTREAM_PARTITIONS"])
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], partitions)
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    users = [f"o{i}" for i in range(6)]
    # Arrival order differs from event time. Events 2 and 4 share a time and a path, so they arrive in the
    # order sent, and that breaks their tie.
    offsets_s = [50, 10, 30, 40, 30, 20]
    ts_of: dict[str, int] = {}
    for user in users:
        for k, off in enumerate(offsets_s):
            eid = f"{user}-{k}"
            ts_of[eid] = T0 + off * 1000
            value = event(user, eid, ts=ts_of[eid])
            if k % 2:
                producer.send_wrong_partition(value)  # a mobile SDK with another partitioner: one hop more
            else:
                producer.send(value)
    producer.flush()

    def settled() -> bool:
        profiles.poll()
        return all((p := profiles.last(u)) is not None and p.events_applied == len(offsets_s) for u in users)

    wait_for(settled, SETTLE_S, "every event folded", lambda: (profiles.by_user, worker.tail()))
    multi = 0
    for user in users:
        history = profiles.by_user[user]
        folded = [i for b in batches(history) for i in b]
        assert sorted(folded) == sorted(f"{user}-{k}" for k in range(len(offsets_s))), history  # each once
        for batch in batches(history):
            multi += len(batch) > 1
            keys = [(ts_of[i], int(i.rsplit("-", 1)[1])) for i in batch]
            assert keys == sorted(keys), f"{user}: update read {batch} out of event-time order"
    assert multi >= 1, "no update held more than one event: the order inside an update was not exercised"


@pytest.mark.timeout(180)
def test_events_older_than_a_forget_are_not_applied_to_the_new_epoch(env: dict[str, str], worker: Worker) -> None:
    """After a forget at time F, a late event with ts < F is dropped (counted), one with ts >= F starts the new
    profile; nothing from before the forget comes back."""
    bootstrap, partitions = env["KAFKA_BOOTSTRAP_SERVERS"], int(env["PREFSTREAM_PARTITIONS"])
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], partitions)
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    user, forget_ts = "f1", T0 + 100_000
    for k in range(4):
        producer.send(event(user, f"before-{k}", ts=T0 + k * 1000))
    producer.flush()
    wait_for(lambda: (p := (profiles.poll(), profiles.last(user))[1]) is not None and p.events_applied == 4,
             SETTLE_S, "first profile", worker.tail)  # fmt: skip
    producer.send({**forget(user, "gdpr-1"), "ts": forget_ts})
    producer.send(event(user, "late-old", ts=forget_ts - 1))  # happened before the forget, arrived after it
    for k in range(4):
        producer.send(event(user, f"after-{k}", ts=forget_ts + k))  # the first one at the forget's own time
    producer.flush()

    def fresh() -> bool:
        profiles.poll()
        p = profiles.last(user)
        return p is not None and p.epoch == 2 and p.events_applied == 4

    wait_for(fresh, SETTLE_S, "profile of the new epoch", lambda: (profiles.by_user.get(user), worker.tail()))
    last = profiles.last(user)
    assert last is not None and parse_ledger(last.summary) == [f"after-{k}" for k in range(4)]
    assert worker.metric("prefstream_events_dropped_total", 'reason="before_forget"') == 1
