"""Several workers against the real broker: joins and leaves during in-flight updates, a SIGKILL and
restart, and reads routed to the owner of a user's partition."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prefstream.schemas.profiles import decode_profile
from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, Worker, trace_user, wait_for
from tests.streams.scenario import Scenario, versions_never_go_back

SETTLE_TIMEOUT_S = 200.0  # generous: the suite shares 2 cores with a broker, workers and vLLM leftovers
USERS = [f"w{i:02d}" for i in range(24)]


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": "4", "PREFSTREAM_LEDGER_DELAY_S": "1.5",
            "PREFSTREAM_LEDGER_CONCURRENCY": "3"}  # fmt: skip


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Worker]]:
    started: dict[str, Worker] = {}
    yield started
    for w in started.values():
        w.kill()


def wave(sc: Scenario, users: list[str], n: int = 2) -> None:
    for i, user in enumerate(users):
        # Each user's producer is fixed: a few users come from a client with a foreign partitioner, every time.
        # (Order is a per-producer property: one user's events sent by two different clients have none.)
        sc.send(user, wrong_partition=USERS.index(user) % 6 == 2, n=n)
        if i % 5 == 0 and sc.sent.get(user):
            sc.resend(user, 0)
    sc.producer.flush()


def settle(sc: Scenario, profiles: ProfileLog, workers: dict[str, Worker], env: dict[str, str]) -> None:
    def state() -> object:
        wrong = sc.mismatches(profiles.by_user)
        traces = [trace_user(env, user, int(env["PREFSTREAM_PARTITIONS"])) for user in list(wrong)[:3]]
        return wrong, "\n".join(traces), {n: w.tail(8) for n, w in workers.items()}

    wait_for(lambda: not sc.mismatches(profiles.poll()), SETTLE_TIMEOUT_S, "profiles settled", state)
    assert not versions_never_go_back(profiles.by_user)


@pytest.mark.timeout(540)
def test_join_and_leave_during_in_flight_updates(env: dict[str, str], workers: dict[str, Worker], tmp_path: Path) -> None:
    """Two workers, a third joins and one leaves while updates are in flight: every profile still lists exactly
    its events once, in order, versions never go back, and a read through any worker returns the owner's profile."""
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    workers["a"] = Worker(env, "a", tmp_path).start()
    workers["a"].wait_ready()  # the first worker creates the topics
    workers["b"] = Worker(env, "b", tmp_path).start()
    workers["b"].wait_ready()
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], 4)
    sc = Scenario(producer)
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])

    wave(sc, USERS)
    wait_for(lambda: sum(w.metric("prefstream_updates_in_flight") for w in workers.values()) >= 2, 30, "updates in flight")
    workers["c"] = Worker(env, "c", tmp_path).start()  # joins mid-flight
    wave(sc, USERS[::2])
    workers["c"].wait_ready()
    wave(sc, USERS)
    wait_for(lambda: sum(w.metric("prefstream_updates_in_flight") for w in workers.values()) >= 2, 30, "updates in flight")
    workers["a"].stop()  # leaves mid-flight (SIGTERM: its in-flight requests are aborted)
    wave(sc, USERS[1::2])
    sc.forget(USERS[3])
    sc.send(USERS[3], n=2)
    producer.flush()
    live = {n: w for n, w in workers.items() if w.alive()}
    settle(sc, profiles, live, env)

    # Reads through either remaining worker return the owner's current profile.
    for user in USERS:
        want = profiles.last(user)
        for w in live.values():
            status, body = w.get(f"/profiles/{user}")
            assert status == 200 and decode_profile(body) == want, (user, w.name, status)


@pytest.mark.timeout(300)
def test_sigkill_and_restart(env: dict[str, str], workers: dict[str, Worker], tmp_path: Path) -> None:
    """A worker killed with SIGKILL mid-update and restarted on its data dir loses nothing and applies nothing twice."""
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    workers["a"] = Worker(env, "a", tmp_path).start()
    workers["a"].wait_ready()
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], 4)
    sc = Scenario(producer)
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    wave(sc, USERS)
    wait_for(lambda: workers["a"].metric("prefstream_updates_in_flight") >= 2, 30, "updates in flight")
    workers["a"].kill()
    wave(sc, USERS)  # produced while no worker runs
    workers["a"] = Worker(env, "a", tmp_path).start()  # same name: same data dir, RocksDB state reused
    workers["a"].wait_ready()
    wave(sc, USERS[::3])
    settle(sc, profiles, workers, env)
