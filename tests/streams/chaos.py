"""Fault trials against real workers and a real broker, checked for exactly-once in effect.

One trial: workers consume a steady stream of valid events (plus malformed ones) for many users while
a seeded schedule injects faults (kill -9 with the same or an empty data dir, graceful stops, workers
joining and leaving, broker restarts). Afterwards, with the `ledger` backend, every user's last
profile must list exactly the valid events sent to it, once each, in order; versions never go back;
the dead letters are exactly the malformed events. `TrialReport` holds the figures that go in
docs/reliability.md: events, lost, doubled, dead letters (and repeats of one), recovery times.

Used by `tests/streams/test_chaos.py` (CI-sized) and `bench/chaos.py` (longer soaks, one JSON line).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefstream.models.backends.ledger import parse_ledger
from prefstream.schemas.deadletter import parse_dead_letter_headers
from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, TopicReader, Worker, trace_user, wait_for
from tests.streams.scenario import MALFORMED, Scenario, versions_never_go_back

START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: `kind` at `at_s` seconds into production."""

    at_s: float
    kind: str  # kill-same-dir, kill-empty-dir, stop, join, leave, broker-restart


@dataclass(frozen=True)
class TrialPlan:
    users: int = 1000
    events: int = 12_000
    rate: float = 150.0  # events per second, produced steadily
    partitions: int = 4
    faults: tuple[Fault, ...] = ()
    malformed_every: int = 500  # one malformed event after every N valid ones
    settle_timeout_s: float = 300.0
    seed: int = 7
    extra_env: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def crash_schedule(kills: int, duration_s: float, seed: int) -> tuple[Fault, ...]:
        """`kills` kill -9s at seeded random moments (alternating same / empty data dir), one graceful stop,
        a third worker joining and later leaving."""
        rng = random.Random(seed)
        span = duration_s * 0.8
        moments = sorted(rng.uniform(duration_s * 0.1, span) for _ in range(kills + 3))
        kinds = ["kill-same-dir" if i % 2 == 0 else "kill-empty-dir" for i in range(kills)] + ["stop", "join", "leave"]
        rng.shuffle(kinds)
        # The join must precede the leave.
        if kinds.index("leave") < kinds.index("join"):
            i, j = kinds.index("join"), kinds.index("leave")
            kinds[i], kinds[j] = kinds[j], kinds[i]
        return tuple(Fault(at, kind) for at, kind in zip(moments, kinds, strict=True))


@dataclass
class TrialReport:
    events: int = 0
    users: int = 0
    malformed: int = 0
    faults: list[str] = field(default_factory=list)
    lost: int = 0
    doubled: int = 0
    out_of_order_users: int = 0
    versions_backwards_users: int = 0
    dead_letters: int = 0
    dead_letter_repeats: int = 0  # dead letters written more than once for one source message (same id)
    recovery_s: list[float] = field(default_factory=list)  # per fault: until every partition published again
    produce_s: float = 0.0
    settle_s: float = 0.0
    gaps_resolved: int = 0
    records_recovered: int = 0
    events_per_s_during_faults: float = 0.0
    unexpected_exits: list[str] = field(default_factory=list)  # workers that stopped without being told to
    details: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def exact(self) -> bool:
        return not (self.lost or self.doubled or self.out_of_order_users or self.versions_backwards_users
                    or self.unexpected_exits) and (
            self.dead_letters - self.dead_letter_repeats == self.malformed
        )


class Trial:
    """Runs one `TrialPlan` with workers started from `env` (the test's isolated topics and app id)."""

    def __init__(self, plan: TrialPlan, env: dict[str, str], workdir: Path,
                 broker_restart: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.plan = plan
        self.env = {**env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": str(plan.partitions), **dict(plan.extra_env)}
        self.workdir = workdir
        self.broker_restart = broker_restart
        self.workers: dict[str, Worker] = {}
        self.generation = 0
        self.fault_times: list[tuple[float, str]] = []
        self.unexpected: list[str] = []

    # --- workers ------------------------------------------------------------------------------------

    def _start(self, name: str) -> Worker:
        worker = Worker(self.env, name, self.workdir).start()
        self.workers[name] = worker
        return worker

    def _fresh_name(self, base: str) -> str:
        self.generation += 1
        return f"{base}{self.generation}"

    def _victim(self, rng: random.Random) -> str | None:
        live = sorted(n for n, w in self.workers.items() if w.alive())
        return rng.choice(live) if len(live) > 1 else None

    def _any_alive(self) -> bool:
        return any(w.alive() for w in self.workers.values())

    def _check_exits(self) -> None:
        """Record (and forget) workers that exited although no fault told them to."""
        for name, worker in list(self.workers.items()):
            if not worker.alive():
                rc = worker.proc.returncode if worker.proc is not None else None
                self.unexpected.append(f"{name} rc={rc} at {time.strftime('%H:%M:%S')}: {worker.tail(3)[-600:]}")
                del self.workers[name]

    def _inject(self, fault: Fault, rng: random.Random) -> None:
        self._check_exits()
        kind = fault.kind
        if kind in ("kill-same-dir", "kill-empty-dir", "stop", "leave"):
            name = self._victim(rng)
            if name is None:
                return
            worker = self.workers.pop(name)
            if kind == "stop" or kind == "leave":
                worker.stop()
            else:
                worker.kill()
            if kind == "kill-same-dir":
                self._start(name)  # same name: same data dir, RocksDB state reused
            elif kind == "kill-empty-dir":
                self._start(self._fresh_name(name.rstrip("0123456789")))
            elif kind == "stop":
                self._start(name)
        elif kind == "join":
            self._start(self._fresh_name("j"))
        elif kind == "broker-restart" and self.broker_restart is not None:
            self.broker_restart()
        self.fault_times.append((time.time(), kind))

    # --- the run ------------------------------------------------------------------------------------

    def run(self) -> TrialReport:
        plan, env = self.plan, self.env
        bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
        first = self._start("a")
        first.wait_ready(START_TIMEOUT_S)  # the first worker creates the topics
        self._start("b").wait_ready(START_TIMEOUT_S)
        producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], plan.partitions)
        sc = Scenario(producer)
        profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
        users = [f"c{i:04d}" for i in range(plan.users)]
        rng = random.Random(plan.seed)

        def produce() -> None:
            start = time.monotonic()
            for i in range(plan.events):
                user = users[rng.randrange(len(users))]
                # A fixed few users always come through a foreign partitioner (their order is per producer path).
                sc.send(user, wrong_partition=users.index(user) % 11 == 5)
                if plan.malformed_every and (i + 1) % plan.malformed_every == 0:
                    raw = MALFORMED[(i // plan.malformed_every) % len(MALFORMED)]
                    producer.send(raw, key=b"u-bad", partition=rng.randrange(plan.partitions))
                    sc.malformed_sent.append(raw)
                delay = start + (i + 1) / plan.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.flush()

        report = TrialReport(users=plan.users)
        t0 = time.monotonic()
        wall0 = time.time()
        thread = threading.Thread(target=produce, name="chaos-producer", daemon=True)
        thread.start()
        fault_rng = random.Random(plan.seed + 1)
        for fault in plan.faults:
            delay = t0 + fault.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._inject(fault, fault_rng)
        thread.join()
        report.produce_s = round(time.monotonic() - t0, 1)
        self._check_exits()
        for worker in self.workers.values():
            # Ready, or an idle member of the group (more workers than assignments): both are fine here.
            wait_for(lambda w=worker: _serving_or_idle(w), START_TIMEOUT_S, f"worker {worker.name} ready", worker.tail)
        settle_start = time.monotonic()

        def state() -> object:
            self._check_exits()
            wrong = sc.mismatches(profiles.by_user)
            traces = [trace_user(env, u, plan.partitions) for u in list(wrong)[:2]]
            return len(wrong), list(wrong.items())[:3], "\n".join(traces), {n: w.tail(5) for n, w in self.workers.items()}

        try:
            wait_for(lambda: not sc.mismatches(profiles.poll()) or not self._any_alive(), plan.settle_timeout_s,
                     "profiles settled", state)  # fmt: skip
        except AssertionError as exc:
            report.details = str(exc)[:4000]
        report.settle_s = round(time.monotonic() - settle_start, 1)
        self._check_exits()
        report.unexpected_exits = list(self.unexpected)
        profiles.poll()
        self._judge(sc, profiles, report, wall0)
        return report

    def _judge(self, sc: Scenario, profiles: ProfileLog, report: TrialReport, wall0: float) -> None:
        env = self.env
        report.events = sum(len(v) for v in sc.expected.values())
        report.malformed = len(sc.malformed_sent)
        report.faults = [kind for _, kind in self.fault_times]
        for user, want in sc.expected.items():
            last = (profiles.by_user.get(user) or [None])[-1]
            got = parse_ledger(last.summary) if last is not None else []
            counts = Counter(got)
            report.lost += sum(1 for e in want if e not in counts)
            report.doubled += sum(n - 1 for n in counts.values() if n > 1)
            if [e for e in got if e in set(want)] != [e for e in want if e in counts]:
                report.out_of_order_users += 1
        report.versions_backwards_users = len(versions_never_go_back(profiles.by_user))
        dlq = TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_DLQ_TOPIC"])
        ids: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(dlq.poll()) < report.malformed:
            pass
        for rec in dlq.poll():
            ids.append(parse_dead_letter_headers(rec.headers).get("id", ""))
        report.dead_letters = len(ids)
        report.dead_letter_repeats = len(ids) - len(set(ids))
        report.recovery_s = self._recovery_times(profiles)
        for w in self.workers.values():
            if w.alive():
                report.gaps_resolved += int(w.metric("prefstream_offset_gaps_total"))
                report.records_recovered += int(w.metric("prefstream_gap_records_recovered_total"))
        if self.fault_times:
            span = max(t for t, _ in self.fault_times) - wall0
            report.events_per_s_during_faults = round(self._events_folded_between(profiles, wall0, wall0 + span) / max(span, 1), 1)

    def _recovery_times(self, profiles: ProfileLog) -> list[float]:
        """Per fault: seconds until every partition had a profile published after it."""
        by_partition: dict[int, list[float]] = {}
        for rec in profiles.reader.records:
            if rec.value is not None:
                by_partition.setdefault(rec.partition, []).append(rec.timestamp / 1000)
        out = []
        for at, _ in self.fault_times:
            firsts = [min((t for t in ts if t > at), default=None) for ts in by_partition.values()]
            if firsts and all(f is not None for f in firsts):
                out.append(round(max(f for f in firsts if f is not None) - at, 1))
        return out

    def _events_folded_between(self, profiles: ProfileLog, start: float, end: float) -> int:
        folded = 0
        for rec in profiles.reader.records:
            if rec.value is not None and start <= rec.timestamp / 1000 <= end:
                folded += profiles_update_events(rec.value)
        return folded

    def stop_all(self) -> None:
        for worker in self.workers.values():
            worker.kill()


def _serving_or_idle(worker: Worker) -> bool:
    import json

    assert worker.alive(), f"worker {worker.name} exited:\n{worker.tail()}"
    try:
        status, body = worker.get("/readyz", timeout=2)
    except OSError:
        return False
    return status == 200 or json.loads(body).get("reason") == "no partitions assigned"


def profiles_update_events(raw: bytes) -> int:
    from prefstream.schemas.profiles import decode_profile

    return decode_profile(raw).update_events


def summary_line(report: TrialReport) -> str:
    rec = report.recovery_s
    p50 = statistics.median(rec) if rec else None
    return (
        f"events={report.events} users={report.users} faults={len(report.faults)} lost={report.lost} "
        f"doubled={report.doubled} dlq={report.dead_letters} dlq_repeats={report.dead_letter_repeats} "
        f"recovery_p50_s={p50} recovery_max_s={max(rec) if rec else None} gaps={report.gaps_resolved}"
    )


__all__ = ["Fault", "Trial", "TrialPlan", "TrialReport", "summary_line"]
