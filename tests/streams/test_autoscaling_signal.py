"""The autoscaling signals move with the real bottleneck: the model window, not the consumer.

A ledger backend with a delay and a window of two is the bottleneck; many users each send one event.
The worker acknowledges every event at once (consumer lag stays near zero), while users wait for a
model slot: `prefstream_users_waiting` and `prefstream_oldest_active_pending_age_seconds` rise, and both fall
back to zero when the backlog drains (docs/operations.md, "Scaling").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, Worker, event, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

USERS = 40
DELAY_S = 0.5  # each model call; with a window of 2, the 40 users take about 10 s to serve
WINDOW = 2
DRAIN_TIMEOUT_S = 120.0


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    return {
        **test_env,
        **CI_WORKER_ENV,
        "PREFSTREAM_LEDGER_DELAY_S": str(DELAY_S),
        "PREFSTREAM_LEDGER_CONCURRENCY": str(WINDOW),
        "PREFSTREAM_FLUSH_MIN_EVENTS": "1",  # each user's one event is due after the idle time
        "PREFSTREAM_FLUSH_SATURATED_MIN_EVENTS": "1",
    }


@dataclass(frozen=True)
class Sample:
    t: float
    waiting: float
    oldest_age: float
    running: float
    slots: float
    users_pending: float
    events_lag: float

    @property
    def workers_needed(self) -> int:
        """The model-demand trigger of deploy/k8s/base/scaledobject.yaml, on this one worker's figures."""
        return math.ceil((self.running + self.waiting) / self.slots) if self.slots else 0


def scrape(worker: Worker, events_topic: str) -> Sample:
    """One /metrics read: the autoscaling gauges and the events topic's consumer lag."""
    _, body = worker.get("/metrics")
    values: dict[str, float] = {}
    lag = 0.0
    for line in body.decode().splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample.startswith(f'prefstream_consumer_lag{{topic="{events_topic}"'):
            lag += float(value)
        else:
            values[sample] = float(value)
    return Sample(
        t=time.monotonic(),
        waiting=values["prefstream_users_waiting"],
        oldest_age=values["prefstream_oldest_active_pending_age_seconds"],
        running=values["prefstream_model_requests_running"],
        slots=values["prefstream_model_slots"],
        users_pending=values["prefstream_users_pending"],
        events_lag=lag,
    )


@pytest.mark.timeout(300)
def test_signal_rises_while_users_wait_for_the_model_and_falls_when_the_backlog_drains(
    env: dict[str, str], worker: Worker
) -> None:
    """40 users behind a window of 2: users wait and the oldest age grows while consumer lag stays ~0;
    once every profile is out, waiting, age and running are back to 0."""
    partitions = int(env["PREFSTREAM_PARTITIONS"])
    producer = Producer(env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_EVENTS_TOPIC"], partitions)
    profiles = ProfileLog(env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_PROFILES_TOPIC"])
    users = [f"scale-{i}" for i in range(USERS)]
    for user in users:
        producer.send(event(user, f"{user}-e1"))
    producer.flush()

    samples: list[Sample] = []
    seen: set[str] = set()

    def drained() -> bool:
        samples.append(scrape(worker, env["PREFSTREAM_EVENTS_TOPIC"]))
        seen.update(u for u, history in profiles.poll().items() if history and history[-1] is not None)
        last = samples[-1]
        return seen >= set(users) and last.users_pending == 0 and max(s.waiting for s in samples) > 0

    wait_for(drained, DRAIN_TIMEOUT_S, "every user's profile and an empty backlog",
             lambda: (samples[-5:], len(seen), worker.tail()))  # fmt: skip

    peak = max(samples, key=lambda s: s.waiting)
    # Demand beyond the window: most users wait while both slots run.
    assert peak.waiting >= USERS // 2, f"users_waiting never rose: peak {peak}"
    assert peak.slots == WINDOW and max(s.running for s in samples) == WINDOW, peak
    # The oldest pending event ages while users wait (the batch takes ~USERS * DELAY_S / WINDOW s).
    assert max(s.oldest_age for s in samples) >= 3.0, f"oldest age never grew: {samples[-10:]}"
    # Consumer lag does not see it: the agent acknowledged everything while users were still waiting.
    busy = [s for s in samples if s.waiting >= USERS // 4]
    assert any(s.events_lag == 0 for s in busy), f"lag was never 0 while users waited: {busy}"
    # The KEDA model-demand query asks for many workers at the peak.
    assert peak.workers_needed >= USERS // (2 * WINDOW), peak
    # Drained: nothing waits, nothing runs, nothing is old, and the demand query asks for no worker.
    wait_for(lambda: (s := scrape(worker, env["PREFSTREAM_EVENTS_TOPIC"])).waiting == 0 and s.running == 0
             and s.oldest_age == 0 and s.workers_needed == 0, 30, "the signals back at 0",
             lambda: scrape(worker, env["PREFSTREAM_EVENTS_TOPIC"]))  # fmt: skip
