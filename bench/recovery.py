"""Benchmark: recovery after kill -9 with `--users` users of state, with and without standby replicas,
and the rebalance pause when a worker joins.

State: every user has one pending event; the flush policy (MIN = MAX = 2 events, no timers) starts no
update until a user's second event, so the state stays in the tables and a probe (a user's second event)
makes exactly one update. Each arm has its own group on the same events topic: `no standby`
(PREFSTREAM_STANDBY_REPLICAS=0) and `standby` (=1). The arms alternate; each repetition:

1. starts workers A and B on EMPTY data dirs (new pods) and times until both are ready and the group is
   stable: `cold_start_s`, which includes restoring every user from the changelog (with standby: twice);
2. sends probes all along (a fresh probe user every `--probe-every` s), kills A with SIGKILL, and times
   until the first profile published for one of A's partitions: `recovery_s` (B must notice A's death:
   the session timeout, PREFSTREAM_SESSION_TIMEOUT_S, is part of it; then B restores A's partitions from
   the changelog, or promotes its standby copies);
3. starts A again (empty data dir: it joins) and measures the largest probe latency from its start until
   the group is stable plus 5 s, less the median probe latency before the kill: `join_pause_s`.

RATIO recovery = recovery_s with standby / without (below 1: standbys shorten recovery).

    python bench/recovery.py                 # 100,000 users of state, 8 partitions
    python bench/recovery.py --quick         # smoke size, 1 repetition
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load  # noqa: E402
from bench.common import (  # noqa: E402
    add_run_flags,
    BenchWorker, ProfileTimes, app_env, broker, close_clients, create_topic, delete_topics, describe, group_members,
    install_signal_handlers, machine, median_of, ratio_line, wait_until, write_results,
)  # fmt: skip
from prefstream.streams.partitioning import partition_for  # noqa: E402
from tests.streams.harness import CI_WORKER_ENV, Producer, event  # noqa: E402

NAME = "recovery"
ARMS = {"no standby": "0", "standby": "1"}
START_TIMEOUT_S = 600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=100_000, help="users of state (one pending event each)")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--probe-every", type=float, default=0.25, help="seconds between probes")
    add_run_flags(p)
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.reps = 2000, 1
    elif args.reps < 3:
        p.error("--reps must be at least 3 (the median of at least 3 is reported); --quick for a smoke run")
    return args


@dataclass
class Probes:
    """Sends each probe user's second event every `every` s from a thread; remembers when and where."""

    producer: Producer
    users: list[str]
    partitions: int
    every: float
    sent: list[tuple[str, int, float]] = field(default_factory=list)  # (event id, partition, time)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if not self.users:
                return
            user = self.users.pop()
            eid = f"{user}-probe"
            self.producer.send(event(user, eid))
            self.producer.flush()
            self.sent.append((eid, partition_for(user, self.partitions), time.time()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Arm:
    """One group (standby setting) over the shared events topic."""

    def __init__(self, name: str, bootstrap: str, events_topic: str, workdir: Path, args: argparse.Namespace,
                 probe_users: list[str]) -> None:  # fmt: skip
        self.name, self.bootstrap, self.workdir, self.args = name, bootstrap, workdir, args
        self.env = {
            **CI_WORKER_ENV, **app_env(bootstrap, "rec", events_topic=events_topic),
            **load.flush_env(2, 2, max_wait_s=86_400, idle_s=86_400), "PREFSTREAM_FLUSH_TICK_S": "0.2",
            "PREFSTREAM_PARTITIONS": str(args.partitions), "PREFSTREAM_STANDBY_REPLICAS": ARMS[name],
            "PREFSTREAM_MODEL_BACKEND": "ledger", "PREFSTREAM_LEDGER_DELAY_S": "0.05",
            "PREFSTREAM_LEDGER_CONCURRENCY": "16",
        }  # fmt: skip
        self.probe_users = probe_users
        self.workers: list[BenchWorker] = []
        self.n = 0

    def worker(self, tag: str) -> BenchWorker:
        self.n += 1
        w = BenchWorker(self.env, f"{'sb' if ARMS[self.name] == '1' else 'ns'}-{tag}{self.n}", self.workdir).start()
        self.workers.append(w)
        return w

    def members(self) -> dict[str, list[int]]:
        return group_members(self.bootstrap, self.env["PREFSTREAM_APP_ID"], self.env["PREFSTREAM_EVENTS_TOPIC"])

    def wait_stable(self, live: list[BenchWorker]) -> dict[str, list[int]]:
        seen: dict[str, list[int]] = {}

        def stable() -> bool:
            nonlocal seen
            for w in live:
                if not w.alive():
                    raise RuntimeError(f"{self.name}: worker {w.name} exited while starting:\n{w.tail(8)}")
            seen = self.members()
            urls = {w.url for w in live}
            owned = sorted(p for ps in seen.values() for p in ps)
            if set(seen) != urls or owned != list(range(self.args.partitions)) or not all(seen.values()):
                return False
            return all(w.get("/readyz", 2)[0] == 200 for w in live)

        wait_until(stable, START_TIMEOUT_S, f"{self.name}: {len(live)} workers stable and ready")
        return seen

    def build_state(self) -> float:
        """Ingest the backlog once (one pending event per user); returns the seconds it took."""
        started = time.monotonic()
        a, b = self.worker("a"), self.worker("b")
        try:
            self.wait_stable([a, b])
            wait_until(lambda: a.metric("prefstream_events_accepted_total") + b.metric("prefstream_events_accepted_total")
                       >= self.args.users, 3600, f"{self.name}: {self.args.users} events accepted")  # fmt: skip
        finally:
            self.stop_all()
        return time.monotonic() - started

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []

    def trial(self, rep: int) -> dict[str, Any]:
        args = self.args
        profiles = ProfileTimes(self.bootstrap, self.env["PREFSTREAM_PROFILES_TOPIC"])
        producer = Producer(self.bootstrap, self.env["PREFSTREAM_EVENTS_TOPIC"], args.partitions)
        probes = Probes(producer, self.probe_users, args.partitions, args.probe_every)
        try:
            # 1. cold start on empty data dirs: both restore their partitions (and standbys) from the changelog
            t0 = time.monotonic()
            a, b = self.worker("a"), self.worker("b")
            members = self.wait_stable([a, b])
            cold = time.monotonic() - t0
            time.sleep(3)  # standbys catch up with the changelog's tail
            probes.start()
            time.sleep(max(3.0, 12 * args.probe_every))  # baseline latencies
            # 2. kill -9 A; B takes A's partitions over
            a_parts = set(members[a.url])
            t_kill = time.time()
            a.kill()

            def recovered() -> bool:
                profiles.poll()
                return any(p in a_parts and t > t_kill and eid in profiles.first_seen for eid, p, t in list(probes.sent))

            wait_until(recovered, START_TIMEOUT_S, f"{self.name}: a profile for A's partitions after the kill")
            recovery = min(profiles.first_seen[eid] for eid, p, t in list(probes.sent)
                           if p in a_parts and t > t_kill and eid in profiles.first_seen) - t_kill  # fmt: skip
            self.wait_stable([b])
            # 3. A joins again (empty data dir)
            t_join = time.time()
            a2 = self.worker("a")
            self.wait_stable([a2, b])
            time.sleep(5)
            t_end = time.time()
            probes.stop()
            producer.flush()
            wait_until(lambda: profiles.poll() >= 0 and all(eid in profiles.first_seen for eid, _, _ in probes.sent),
                       120, f"{self.name}: every probe in a profile")  # fmt: skip
            lat = [(t, profiles.first_seen[eid] - t) for eid, _, t in probes.sent]
            baseline = statistics.median(x for t, x in lat if t < t_kill)
            during_join = [x for t, x in lat if t_join <= t <= t_end]
            return {
                "cold_start_s": round(cold, 2),
                "recovery_s": round(recovery, 2),
                "join_pause_s": round(max(during_join) - baseline, 2),
                "probe_latency_baseline_s": round(baseline, 3),
                "a_partitions": len(a_parts),
            }
        finally:
            probes.stop()
            self.stop_all()
            profiles.close()
            close_clients()


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()
    args = parse_args(argv)
    m = machine()
    print(f"{NAME}: {describe(m)}", flush=True)
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="prefstream-recovery-") as tmp:
        workdir = Path(tmp)
        shared = app_env(bootstrap, "rec")
        topic = shared["PREFSTREAM_EVENTS_TOPIC"]
        users = [f"u{i:07d}" for i in range(args.users)]
        # Probe users: the last ones, split between the arms (a probe event reaches both groups).
        n_probe = min(args.users // 4, 4000)
        probe = users[-n_probe:]
        arms = {name: Arm(name, bootstrap, topic, workdir, args, probe[i::2]) for i, name in enumerate(ARMS)}
        producer = Producer(bootstrap, topic, args.partitions)
        try:
            create_topic(bootstrap, topic, args.partitions)
            for i, user in enumerate(users):
                producer.send(event(user, f"{user}-0"))
                if i % 10_000 == 0:
                    producer.flush()
            producer.flush()
            build = {}
            for name, arm in arms.items():
                build[name] = round(arm.build_state(), 1)
                print(f"  state built ({name}): {args.users} users in {build[name]} s", flush=True)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in arms}
            for rep in range(args.reps):
                for name, arm in arms.items():
                    started = time.monotonic()
                    r = arm.trial(rep)
                    runs[name].append(r)
                    print(f"  rep {rep + 1}/{args.reps} {name}: {r} ({time.monotonic() - started:.0f} s)", flush=True)
        finally:
            for arm in arms.values():
                arm.stop_all()
                delete_topics(bootstrap, {k: v for k, v in arm.env.items() if k != "PREFSTREAM_EVENTS_TOPIC"})
            close_clients()
            delete_topics(bootstrap, shared)
    med = {name: {k: median_of(rs, k) for k in ("cold_start_s", "recovery_s", "join_pause_s")} for name, rs in runs.items()}
    ratio = med["standby"]["recovery_s"] / med["no standby"]["recovery_s"]
    payload = {
        "name": NAME, "machine": m, "args": vars(args), "state_build_s": build, "runs": runs, "median": med,
        "users": args.users,
        "session_timeout_s": CI_WORKER_ENV["PREFSTREAM_SESSION_TIMEOUT_S"], "ratio": round(ratio, 3),
    }  # fmt: skip

    def plot(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        keys = ("cold_start_s", "recovery_s", "join_pause_s")
        width = 0.38
        for i, name in enumerate(runs):
            xs = [k + (i - 0.5) * width for k in range(len(keys))]
            ax.bar(xs, [med[name][k] for k in keys], width, label=name, alpha=0.75)
            for x, k in zip(xs, keys, strict=True):
                ax.scatter([x] * len(runs[name]), [r[k] for r in runs[name]], color="gray", s=10, zorder=3)
        ax.set_xticks(range(len(keys)), ["cold start\n(restore all)", "kill -9 -> profile", "join pause"])
        ax.set_ylabel("seconds")
        ax.set_title(f"recovery with {args.users:,} users of state ({args.partitions} partitions)")
        ax.legend(fontsize=8)

    write_results(NAME, payload, plot, args.results)
    for name, v in med.items():
        print(f"{name}: cold start {v['cold_start_s']:.1f} s ({args.users:,} users) | kill -9 -> "
              f"profile {v['recovery_s']:.1f} s | join pause {v['join_pause_s']:.1f} s")  # fmt: skip
    ratio_line(NAME, ratio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
