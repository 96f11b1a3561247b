"""Measure the stream worker end to end: events/s, events per update, event-to-profile latency.

Starts (or reuses, with KAFKA_BOOTSTRAP_SERVERS) a Kafka broker, runs one `prefstream worker` with the
chosen backend (default: `ledger` with an artificial model latency), produces events for many users at
a fixed rate, and reads the profiles topic until every event is in a profile. Latency is measured per
event: from the producer's send to the consumer seeing the first profile whose ledger lists it.

    python bench/stream_throughput.py --users 200 --events 4000 --rate 400 --model-delay 0.5 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefstream.models.backends.ledger import parse_ledger  # noqa: E402
from prefstream.kafka import local  # noqa: E402
from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, Worker, event  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--rate", type=float, default=400.0, help="events per second produced")
    ap.add_argument("--model-delay", type=float, default=0.5, help="ledger latency per update, seconds")
    ap.add_argument("--concurrency", type=int, default=16, help="model window (ledger concurrency)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="prefstream-bench-") as tmp:
        workdir = Path(tmp)
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        cluster = None if external else local.start(workdir / "kafka")
        bootstrap = external or cluster.bootstrap_servers  # type: ignore[union-attr]
        token = uuid.uuid4().hex[:8]
        env = {
            **CI_WORKER_ENV,
            # The product's flush defaults, except the per-user cost control which a bench would only measure.
            "PREFSTREAM_FLUSH_MIN_EVENTS": "4", "PREFSTREAM_FLUSH_IDLE_S": "8", "PREFSTREAM_FLUSH_MAX_WAIT_S": "60",
            "PREFSTREAM_FLUSH_MIN_INTERVAL_S": "15", "PREFSTREAM_FLUSH_TICK_S": "1",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PREFSTREAM_PARTITIONS": str(args.partitions),
            "PREFSTREAM_EVENTS_TOPIC": f"bench.events.{token}", "PREFSTREAM_PROFILES_TOPIC": f"bench.profiles.{token}",
            "PREFSTREAM_DLQ_TOPIC": f"bench.dlq.{token}", "PREFSTREAM_FAILURES_TOPIC": f"bench.failures.{token}",
            "PREFSTREAM_UPDATES_TOPIC": f"bench.updates.{token}",
            "PREFSTREAM_APP_ID": f"bench.{token}", "PREFSTREAM_LEDGER_DELAY_S": str(args.model_delay),
            "PREFSTREAM_LEDGER_CONCURRENCY": str(args.concurrency), "PREFSTREAM_LOG_LEVEL": "warning",
        }  # fmt: skip
        worker = Worker(env, "bench", workdir).start()
        try:
            worker.wait_ready()
            producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], args.partitions)
            profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
            sent_at: dict[str, float] = {}
            seen_at: dict[str, float] = {}
            start = time.monotonic()
            for i in range(args.events):
                user = f"user{i % args.users:05d}"
                eid = f"{user}-{i}"
                due = start + i / args.rate
                while time.monotonic() < due:
                    time.sleep(min(0.01, due - time.monotonic()))
                producer.send(event(user, eid))
                sent_at[eid] = time.monotonic()
                if i % 200 == 0:
                    _collect(profiles, seen_at)
            producer.flush()
            produced = time.monotonic() - start
            deadline = time.monotonic() + args.timeout
            while len(seen_at) < args.events and time.monotonic() < deadline:
                _collect(profiles, seen_at)
            elapsed = max(seen_at.values()) - start if seen_at else float("nan")
            updates = sum(1 for h in profiles.by_user.values() for p in h if p is not None)
            lat = sorted(seen_at[e] - sent_at[e] for e in seen_at)
            print(f"events {args.events} users {args.users} partitions {args.partitions} rate {args.rate}/s "
                  f"model_delay {args.model_delay}s window {args.concurrency}")
            print(f"produced in {produced:.1f}s; all in profiles after {elapsed:.1f}s; "
                  f"throughput {len(seen_at) / elapsed:.1f} events/s (in profiles {len(seen_at)}/{args.events})")
            print(f"updates {updates}; events per update {len(seen_at) / max(1, updates):.2f}")
            print(f"event->profile latency s: p50 {statistics.median(lat):.2f} "
                  f"p95 {lat[int(0.95 * (len(lat) - 1))]:.2f} max {lat[-1]:.2f}")
            return 0 if len(seen_at) == args.events else 1
        finally:
            worker.stop()
            if cluster is not None:
                local.stop(cluster.root)


def _collect(profiles: ProfileLog, seen_at: dict[str, float]) -> None:
    now = time.monotonic()
    before = profiles._seen
    profiles.poll()
    if profiles._seen == before:
        return
    for history in profiles.by_user.values():
        last = history[-1]
        if last is not None:
            for eid in parse_ledger(last.summary):
                seen_at.setdefault(eid, now)


if __name__ == "__main__":
    raise SystemExit(main())
