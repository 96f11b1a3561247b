"""Fault soaks: crashes, rebalance storms and broker faults under load, judged for exactly-once in effect.

Starts its own Kafka (1 node, or 3 with replication 3 and min ISR 2) in a temporary directory, runs one
`tests.streams.chaos.Trial` with the ledger backend, prints a summary line and the full report as JSON,
and exits 1 if anything was lost, doubled, reordered or dead-lettered wrongly.

    python bench/chaos.py crash  --users 1000 --events 12000 --rate 150 --kills 6
    python bench/chaos.py storm  --users 1000 --events 30000 --rate 150 --every 6
    python bench/chaos.py broker --users 500 --events 9000 --rate 150 --nodes 1 --restarts 2
    python bench/chaos.py broker --users 500 --events 9000 --rate 150 --nodes 3 --restarts 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefstream.kafka import local  # noqa: E402
from tests.streams.chaos import Fault, Trial, TrialPlan, summary_line  # noqa: E402


def storm(duration_s: float, every_s: float) -> tuple[Fault, ...]:
    """A worker joins, then one leaves, every `every_s` seconds: a rebalance each time, all run long."""
    faults, t, joined = [], every_s, False
    while t < duration_s * 0.9:
        faults.append(Fault(t, "leave" if joined else "join"))
        joined = not joined
        t += every_s
    return tuple(faults)


def broker_faults(duration_s: float, restarts: int) -> tuple[Fault, ...]:
    step = duration_s / (restarts + 1)
    return tuple(Fault(step * (i + 1), "broker-restart") for i in range(restarts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=("crash", "storm", "broker"))
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--events", type=int, default=12_000)
    ap.add_argument("--rate", type=float, default=150.0, help="events per second produced")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--kills", type=int, default=6, help="crash: kill -9s (same / empty data dir alternately)")
    ap.add_argument("--every", type=float, default=6.0, help="storm: seconds between joins and leaves")
    ap.add_argument("--nodes", type=int, default=1, choices=(1, 3), help="broker: cluster size")
    ap.add_argument("--restarts", type=int, default=2, help="broker: broker restarts (kill -9 of one node)")
    ap.add_argument("--standby", type=int, default=0, help="standby replicas per table partition (CI settings: 0)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (worker logs) and print its path")
    args = ap.parse_args()

    duration = args.events / args.rate
    faults = {
        "crash": lambda: TrialPlan.crash_schedule(args.kills, duration, args.seed),
        "storm": lambda: storm(duration, args.every),
        "broker": lambda: broker_faults(duration, args.restarts),
    }[args.kind]()
    extra = (("PREFSTREAM_REPLICATION_FACTOR", "3"),) if args.nodes == 3 else ()
    extra += (("PREFSTREAM_STANDBY_REPLICAS", str(args.standby)),)
    plan = TrialPlan(users=args.users, events=args.events, rate=args.rate, partitions=args.partitions,
                     faults=faults, seed=args.seed, extra_env=extra)  # fmt: skip
    workdir = tempfile.mkdtemp(prefix="prefstream-chaos-")
    with local.running(Path(workdir) / "kafka", nodes=args.nodes) as cluster:
        tmp = workdir
        token = uuid.uuid4().hex[:8]
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
            **{f"PREFSTREAM_{n.upper()}_TOPIC": f"chaos.{n}.{token}" for n in ("events", "profiles", "dlq", "failures")},
            "PREFSTREAM_APP_ID": f"chaos-{token}",
            "PREFSTREAM_LOG_FORMAT": "json",
        }
        state = {"cluster": cluster, "next": 0}

        def restart_broker() -> None:
            # kill -9 one node (round robin) and bring it back on its data: a crash, not a clean stop.
            current = state["cluster"]
            node = current.nodes[state["next"] % len(current.nodes)]
            state["next"] += 1
            local.stop_node(current, node, kill=True)
            state["cluster"] = local.restart_node(current, node)

        trial = Trial(plan, env, Path(tmp), broker_restart=restart_broker)
        try:
            report = trial.run()
        finally:
            trial.stop_all()
    if args.keep:
        print(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    rec = report.recovery_s
    print(f"chaos {args.kind}: {summary_line(report)}")
    if rec:
        print(f"recovery (s): p50 {statistics.median(rec):.1f}, max {max(rec):.1f}, over {len(rec)} faults")
    print(json.dumps({"kind": args.kind, "args": vars(args), **report.as_dict()}))
    return 0 if report.exact else 1


if __name__ == "__main__":
    sys.exit(main())
