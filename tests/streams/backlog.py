"""A backlog against a hanging model, with the worker's resident memory sampled throughout.

Used by `tests/streams/test_model_faults.py::test_memory_bounded_under_a_backlog` (CI size) and by
`bench/backlog_memory.py` (any size). Every update of every user hangs (ledger fail mode `hang`) until
the time box (`PREFSTREAM_UPDATE_TIMEOUT_S`) ends it, so nothing is ever folded: every accepted event
stays pending, users are retried, degraded and parked, and one over-full user runs into
`PREFSTREAM_MAX_PENDING_EVENTS`, beyond which its events are dead-lettered `backlog_full`.

The worker's RSS (`VmRSS` of /proc/<pid>/status) is read every `sample_s` from just after it is ready,
while the events are produced and consumed, and for `hold_s` after the last one was consumed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.streams.harness import CI_WORKER_ENV, Producer, TopicReader, Worker, dead_letters, event, wait_for

HUNG = "m-"  # every user's id starts with it: every update hangs
FULL_USER = "m-full"


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB (`VmRSS`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


@dataclass
class RssSampler:
    """Samples a process's RSS on a thread: (seconds since start, KiB)."""

    pid: int
    every_s: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        t0 = time.monotonic()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.samples.append((time.monotonic() - t0, rss_kib(self.pid)))
                except (OSError, LookupError):
                    return  # the process is gone
                self._stop.wait(self.every_s)

        self._thread = threading.Thread(target=run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def peak_mib(self, since_s: float = 0.0) -> float:
        return max((k for t, k in self.samples if t >= since_s), default=0) / 1024


@dataclass
class BacklogFigures:
    users: int
    events: int  # produced for the ordinary users
    full_events: int  # produced for the over-full user
    max_pending: int
    baseline_mib: float  # RSS once ready, before any event
    peak_mib: float
    end_mib: float  # RSS at the end of the hold
    consumed_s: float  # from the first send until every event was accepted or dead-lettered
    accepted: int
    pending: int  # prefstream_events_pending at the end: nothing folded, nothing lost
    backlog_full: int  # dead letters with code backlog_full
    failures: int  # failed (timed-out) updates
    parked: int
    samples: list[tuple[float, int]]

    def report(self) -> str:
        return (
            f"backlog: {self.events} events over {self.users} users + {self.full_events} for one user "
            f"(PREFSTREAM_MAX_PENDING_EVENTS={self.max_pending}), model hanging\n"
            f"consumed in {self.consumed_s:.1f} s; accepted {self.accepted}, pending {self.pending}, "
            f"backlog_full {self.backlog_full}, timed-out updates {self.failures}, parked {self.parked}\n"
            f"worker RSS MiB: baseline {self.baseline_mib:.1f}, peak {self.peak_mib:.1f}, end {self.end_mib:.1f} "
            f"({len(self.samples)} samples)"
        )


def run_backlog(
    base_env: dict[str, str], workdir: Path, *, users: int, events: int, max_pending: int, full_extra: int,
    timeout_s: float = 2.0, hold_s: float = 10.0, consume_timeout_s: float = 300.0, sample_s: float = 0.5,
) -> BacklogFigures:  # fmt: skip
    """Run the scenario against one fresh worker (topics and app id from `base_env`); return the figures."""
    env = {
        **base_env, **CI_WORKER_ENV,
        "PREFSTREAM_LEDGER_FAIL_MODE": "hang", "PREFSTREAM_LEDGER_FAIL_ALWAYS_PREFIX": HUNG,
        "PREFSTREAM_UPDATE_TIMEOUT_S": str(timeout_s), "PREFSTREAM_MAX_PENDING_EVENTS": str(max_pending),
        "PREFSTREAM_LOG_LEVEL": "warning",
    }  # fmt: skip
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    worker = Worker(env, "backlog", workdir).start()
    sampler: RssSampler | None = None
    try:
        worker.wait_ready()
        assert worker.proc is not None
        sampler = RssSampler(worker.proc.pid, sample_s).start()
        time.sleep(2 * sample_s)
        baseline = sampler.samples[-1][1] / 1024
        producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], int(env["PREFSTREAM_PARTITIONS"]))
        names = [f"{HUNG}{i:05d}" for i in range(users)]
        full_events = max_pending + full_extra
        started = time.monotonic()
        full_sent = 0
        for i in range(events):
            user = names[i % users]
            producer.send(event(user, f"{user}-e{i}"))
            if full_sent < full_events and i % max(1, events // full_events) == 0:
                producer.send(event(FULL_USER, f"{FULL_USER}-e{full_sent}"))
                full_sent += 1
        while full_sent < full_events:
            producer.send(event(FULL_USER, f"{FULL_USER}-e{full_sent}"))
            full_sent += 1
        producer.flush()

        def consumed() -> bool:
            done = worker.metric("prefstream_events_accepted_total")
            dropped = worker.metric("prefstream_events_rejected_total", f'reason="{"backlog_full"}"')
            return done + dropped >= events + full_events

        wait_for(consumed, consume_timeout_s, "every event accepted or dead-lettered", worker.tail)
        consumed_s = time.monotonic() - started
        time.sleep(hold_s)  # the model keeps hanging: retries, parks, the backlog sits
        dlq = TopicReader(bootstrap, env["PREFSTREAM_DLQ_TOPIC"])
        wait_for(lambda: len(dlq.poll()) >= full_extra, 30, "dead letters")
        letters = dead_letters(dlq)
        sampler.stop()
        assert worker.alive(), worker.tail()
        return BacklogFigures(
            users=users, events=events, full_events=full_events, max_pending=max_pending,
            baseline_mib=baseline, peak_mib=sampler.peak_mib(), end_mib=sampler.samples[-1][1] / 1024,
            consumed_s=consumed_s, accepted=int(worker.metric("prefstream_events_accepted_total")),
            pending=int(worker.metric("prefstream_events_pending")),
            backlog_full=sum(1 for d in letters if d.get("code") == "backlog_full"),
            failures=int(worker.metric("prefstream_update_failures_total", 'reason="timeout"')),
            parked=int(worker.metric("prefstream_users_parked")), samples=list(sampler.samples),
        )  # fmt: skip
    finally:
        if sampler is not None:
            sampler.stop()
        worker.stop()
