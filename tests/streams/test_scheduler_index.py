"""The fold scheduler's due index (a heap of due times) starts exactly the users the full scan it replaced
would start, and never sleeps past a due time; a wake-up looks at due users only (issue #13)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as hs

from prefstream.models.backends.ledger import LedgerBackend
from prefstream.settings import FlushSettings
from prefstream.streams import state as st
from prefstream.streams.metrics import StreamMetrics
from prefstream.streams.policy import FlushPolicy, UserView
from prefstream.streams.scheduler import FoldScheduler, InFlight, _Gate

FLUSH = FlushSettings(min_events=2, max_events=6, max_wait_s=5.0, idle_s=1.0, min_interval_s=2.0, tick_s=1.0,
                      saturated_min_events=4)  # fmt: skip
POLICY = FlushPolicy.from_settings(FLUSH, 50)
USERS = [f"u{i}" for i in range(12)]


def full_scan(views: dict[str, UserView], inflight: set[str], gates: set[int], free: int,
              now: int) -> tuple[list[str], float]:  # fmt: skip
    """The scheduler's step before the index (every waiting user decided on every wake-up): the oracle."""
    candidates = [(u, v) for u, v in views.items() if u not in inflight and v.partition not in gates]
    due = [(u, v) for u, v in candidates if POLICY.decide(v, saturated=False).ready(now)]
    saturated = free <= 0 or len(due) > free
    if saturated:
        due = [(u, v) for u, v in due if POLICY.decide(v, saturated=True).ready(now)]
    due.sort(key=lambda uv: (uv[1].backfill, uv[1].oldest_ms, uv[0]))
    started = [u for u, _ in due[: max(0, free)]]
    later = [d.due_ms for u, v in candidates if u not in started
             for d in [POLICY.decide(v, saturated=saturated)] if d.due_ms is not None and d.due_ms > now]  # fmt: skip
    return started, max(0.0, min(FLUSH.tick_s, (min(later) - now) / 1000)) if later else FLUSH.tick_s


@dataclass
class Recorder:
    started: list[str]


def scheduler(concurrency: int) -> tuple[FoldScheduler, Recorder]:
    rec = Recorder([])
    sched = FoldScheduler(backend=LedgerBackend(max_concurrency=concurrency), policy=POLICY, flush=FLUSH,
                          plan=st.RetryPlan(2, 2, 0.1, 1.0), read_state=lambda u: (st.Meta(), None, None),
                          send_result=None, metrics=StreamMetrics(), user_key=lambda u: u)  # type: ignore[arg-type]  # fmt: skip

    def start(user_id: str, view: UserView) -> None:  # no task: the test only looks at the choice
        rec.started.append(user_id)
        sched.inflight[user_id] = InFlight(request_id=user_id, partition=view.partition)

    sched._start = start  # type: ignore[method-assign]
    sched.on_assigned({0, 1, 2})
    sched.on_recovered({}, {})
    return sched, rec


views_st = hs.builds(
    UserView, partition=hs.integers(0, 2), epoch=hs.just(1), count=hs.integers(0, 8), tokens=hs.integers(0, 60),
    oldest_ms=hs.integers(0, 8000), newest_ms=hs.integers(0, 8000), last_update_ms=hs.integers(0, 8000),
    next_retry_ms=hs.sampled_from([0, 0, 3000, 9000]), parked=hs.booleans(), batch_cap=hs.sampled_from([0, 0, 2]),
    backfill=hs.booleans(), hold_until_ms=hs.sampled_from([0, 0, 6000]),
)  # fmt: skip
op_st = hs.one_of(
    hs.tuples(hs.just("observe"), hs.sampled_from(USERS), hs.one_of(hs.none(), views_st)),
    hs.tuples(hs.just("complete"), hs.sampled_from(USERS), hs.none()),
    hs.tuples(hs.just("gate"), hs.integers(0, 2), hs.booleans()),
    hs.tuples(hs.just("step"), hs.integers(0, 1500), hs.none()),
)


@settings(max_examples=300, deadline=None)
@given(concurrency=hs.integers(1, 4), ops=hs.lists(op_st, max_size=60))
def test_due_index_starts_the_same_users_as_the_full_scan(concurrency: int, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """On random sequences of reports, completions, gates and wake-ups, each step starts the users the full
    scan would start, in the same order, and sleeps no longer than the scan would."""
    sched, rec = scheduler(concurrency)
    now = 0
    for op, a, b in ops:
        if op == "observe":
            sched.observe(a, b)
        elif op == "complete":
            sched.inflight.pop(a, None)
        elif op == "gate":
            if b:
                sched._gates[a] = _Gate(highwater=10**9, deadline=float("inf"))
            else:
                sched._gates.pop(a, None)
        else:
            now += a
            free = concurrency - len(sched.inflight)
            sched.running = len(sched.inflight)
            expected, sleep = full_scan(dict(sched.views), set(sched.inflight), set(sched._gates), free, now)
            rec.started.clear()
            timeout = sched.step(now)
            assert rec.started == expected
            assert timeout <= sleep + 1e-9


def test_a_wake_up_decides_only_due_users() -> None:
    """With 20,000 users waiting and none due, a step asks the policy about no user at all (it used to ask
    about every one of them on every wake-up)."""
    sched, rec = scheduler(4)
    for i in range(20_000):
        sched.observe(f"w{i}", UserView(partition=i % 3, epoch=1, count=1, tokens=1, oldest_ms=10**9,
                                        newest_ms=10**9))  # fmt: skip
    sched.policy = CountingPolicy(**vars(POLICY))
    assert sched.step(1000) == FLUSH.tick_s
    assert sched.policy.calls == 0 and rec.started == []


@dataclass(frozen=True)
class CountingPolicy(FlushPolicy):
    """The flush policy, counting how many users it is asked about."""

    calls: int = 0

    def decide(self, view: UserView, *, saturated: bool):  # type: ignore[no-untyped-def]
        object.__setattr__(self, "calls", self.calls + 1)
        return super().decide(view, saturated=saturated)

