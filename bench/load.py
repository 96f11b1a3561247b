"""One measured stream run: start workers, produce events (a burst or an open-loop rate), time the profiles.

Used by coalescing.py, scale_out.py and latency.py. The workers get fresh topics and a fresh group per
run, so runs never see each other's events. Every event's latency is the first profile record that lists
it (its broker timestamp) minus the moment it was handed to the producer: both are this machine's clock.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchWorker, ProfileTimes, app_env, close_clients, delete_topics, group_assignment, percentiles, wait_until,
)  # fmt: skip
from tests.streams.harness import CI_WORKER_ENV, Producer, event

START_TIMEOUT_S = 600.0  # a vLLM engine starts in minutes on a busy CPU


@dataclass(frozen=True)
class Plan:
    """What one run produces: `users` x `per_user` events at `rate`/s (0: a burst), to users in turn or, with
    `seed`, to users drawn at random (an open-loop arrival of many independent users)."""

    users: int
    per_user: int
    rate: float = 0.0
    partitions: int = 8
    seed: int | None = None

    @property
    def events(self) -> int:
        return self.users * self.per_user


def flush_env(min_events: int, max_events: int, *, max_wait_s: float = 60.0, idle_s: float = 30.0,
              saturated_min_events: int | None = None, tick_s: float = 0.2) -> dict[str, str]:  # fmt: skip
    return {
        "PREFSTREAM_FLUSH_MIN_EVENTS": str(min_events),
        "PREFSTREAM_FLUSH_MAX_EVENTS": str(max_events),
        "PREFSTREAM_FLUSH_SATURATED_MIN_EVENTS": str(saturated_min_events or min_events),
        "PREFSTREAM_FLUSH_MAX_WAIT_S": str(max_wait_s),
        "PREFSTREAM_FLUSH_IDLE_S": str(idle_s),
        "PREFSTREAM_FLUSH_MIN_INTERVAL_S": "0",
        "PREFSTREAM_FLUSH_TICK_S": str(tick_s),
    }


def run(bootstrap: str, workdir: Path, prefix: str, plan: Plan, worker_env: dict[str, str], *, workers: int = 1,
        cmd: list[str] | None = None, timeout: float = 900.0) -> dict[str, Any]:  # fmt: skip
    """Start `workers` workers, wait until the group is stable, produce `plan`, wait for every event's profile."""
    env = {**CI_WORKER_ENV, **app_env(bootstrap, prefix), "PREFSTREAM_PARTITIONS": str(plan.partitions), **worker_env}
    procs = [BenchWorker(env, f"{env['PREFSTREAM_APP_ID']}-{i}", workdir, cmd) for i in range(workers)]  # fresh data dirs
    profiles: ProfileTimes | None = None
    try:
        for w in procs:
            w.start()
        for w in procs:
            w.wait_ready(START_TIMEOUT_S)

        def stable() -> bool:
            members = group_assignment(bootstrap, env["PREFSTREAM_APP_ID"], env["PREFSTREAM_EVENTS_TOPIC"])
            owned = sorted(p for m in members for p in m)
            return len(members) == workers and all(members) and owned == list(range(plan.partitions))

        wait_until(stable, START_TIMEOUT_S, f"{workers} workers sharing {plan.partitions} partitions")
        for w in procs:
            w.wait_ready(START_TIMEOUT_S)
        profiles = ProfileTimes(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
        producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], plan.partitions)
        sent: dict[str, float] = {}
        rng = random.Random(plan.seed)
        start = time.time()
        for i in range(plan.events):
            if plan.rate:
                due = start + i / plan.rate
                while (lag := due - time.time()) > 0:
                    time.sleep(min(lag, 0.005))
            user = f"u{(i % plan.users if plan.seed is None else rng.randrange(plan.users)):06d}"
            eid = f"{user}-{i}"
            producer.send(event(user, eid))
            sent[eid] = time.time()
            if plan.rate and i % 100 == 0:
                profiles.poll()
        producer.flush()
        produced_s = time.time() - start
        profiles.wait_for(plan.events, timeout, f"{plan.events} events in profiles",
                          lambda: all(w.alive() for w in procs))  # fmt: skip
        end = max(profiles.first_seen[e] for e in sent)
        latencies = [profiles.first_seen[e] - sent[e] for e in sent]
        updates = len(profiles.updates)
        elapsed = end - start
        return {
            "events": plan.events,
            "events_per_s": round(plan.events / elapsed, 1),
            "updates_per_s": round(updates / elapsed, 2),
            "events_per_update": round(plan.events / max(1, updates), 2),
            "elapsed_s": round(elapsed, 2),
            "produced_s": round(produced_s, 2),
            "latency_s": percentiles(latencies),
        }
    finally:
        for w in procs:
            w.stop()
        if profiles is not None:
            profiles.close()
        close_clients()
        delete_topics(bootstrap, env)
