"""The fold scheduler in process: a sliding window over the backend's concurrency, one update per user,
aborts for partitions that move away."""

from __future__ import annotations

import asyncio

from prefstream.models.backends.ledger import LedgerBackend
from prefstream.models.interface import UpdateRequest, UpdateSuccess
from prefstream.settings import FlushSettings
from prefstream.schemas.evidence import Evidence
from prefstream.streams import state as st
from prefstream.streams.metrics import PendingFigures, StreamMetrics
from prefstream.streams.policy import FlushPolicy
from prefstream.streams.records import FoldResult
from prefstream.streams.scheduler import FoldScheduler, now_ms

FLUSH = FlushSettings(min_events=1, max_events=8, max_wait_s=1.0, idle_s=0.0, min_interval_s=0.0, tick_s=0.05,
                      saturated_min_events=1)  # fmt: skip


class SlowPerUser(LedgerBackend):
    """A ledger whose latency depends on the user, recording start and end times."""

    def __init__(self, delays: dict[str, float]) -> None:
        super().__init__(max_concurrency=2)
        self.delays = delays
        self.log: list[tuple[str, str]] = []
        self.running_per_user: dict[str, int] = {}

    async def update(self, request: UpdateRequest) -> UpdateSuccess:  # type: ignore[override]
        u = request.user_id
        self.running_per_user[u] = self.running_per_user.get(u, 0) + 1
        assert self.running_per_user[u] == 1, "two updates in flight for one user"
        self.log.append(("start", u))
        try:
            await asyncio.sleep(self.delays[u])
        finally:
            self.running_per_user[u] -= 1
        self.log.append(("end", u))
        return UpdateSuccess(request_id=request.request_id, summary="s", usage=_usage(), model="m", prompt_version="p")


def _usage():  # type: ignore[no-untyped-def]
    from prefstream.models.interface import Usage

    return Usage(prompt_tokens=1, completion_tokens=1, latency_s=0.0)


def make(backend: LedgerBackend, users: dict[str, int], events: int = 1) -> tuple[FoldScheduler, list[FoldResult]]:
    states = {u: (st.Meta(), st.Pending(epoch=1, events=tuple(st.PendingEvent(event_id=f"{u}-{i}",
              evidence=Evidence(event_id=f"{u}-{i}"), ts_ms=0, produced_ms=0, accepted_ms=0, tokens=1)
              for i in range(1, events + 1))), None) for u in users}  # fmt: skip
    sent: list[FoldResult] = []

    async def send(partition: int, result: FoldResult) -> None:
        sent.append(result)

    sched = FoldScheduler(backend=backend, policy=FlushPolicy.from_settings(FLUSH, 1000), flush=FLUSH,
                          plan=st.RetryPlan(2, 2, 0.1, 1.0), read_state=lambda u: states[u], send_result=send,
                          metrics=StreamMetrics(), user_key=lambda u: u)  # fmt: skip
    sched.on_assigned({0, 1})
    views = {u: st.view_of(p, st.Meta(), states[u][1]) for u, p in users.items()}
    sched.on_recovered({u: v for u, v in views.items() if v}, {})
    return sched, sent


def test_sliding_window_starts_next_request_when_any_slot_frees() -> None:
    """With a window of 2, a third request starts when the fast one ends, not when the slow one does."""
    backend = SlowPerUser({"fast": 0.05, "slow": 1.0, "third": 0.05})

    async def go() -> list[FoldResult]:
        sched, sent = make(backend, {"fast": 0, "slow": 0, "third": 1})
        task = asyncio.create_task(sched.run())
        while len(sent) < 2:
            await asyncio.sleep(0.01)
        done = list(sent)
        await sched.stop()
        await asyncio.gather(task, return_exceptions=True)
        return done

    done = asyncio.run(go())
    # Two results arrived while the slow request (1 s) was still running: the window slid.
    assert {r.user_id for r in done} == {"fast", "third"}
    assert ("end", "slow") not in backend.log


def test_revoked_partition_aborts_its_requests_and_user_stays_single_flight() -> None:
    """Requests of a partition that moved away are cancelled; a user is not asked again until its result applied."""
    backend = SlowPerUser({"a": 5.0, "b": 5.0})

    async def go() -> FoldScheduler:
        sched, _ = make(backend, {"a": 0, "b": 1})
        task = asyncio.create_task(sched.run())
        while len(backend.log) < 2:
            await asyncio.sleep(0.01)
        sched.on_revoked()
        sched.on_assigned({0})
        await asyncio.sleep(0.1)
        assert set(sched.inflight) == {"a"}
        # A step while "a" is in flight does not start it again.
        sched.step(now_ms())
        await sched.stop()
        await asyncio.gather(task, return_exceptions=True)
        return sched

    sched = asyncio.run(go())
    assert [u for e, u in backend.log if e == "start"].count("a") == 1
    assert sched.metrics.requests_aborted.labels("revoked")._value.get() == 1


class BrokenTokenizer(SlowPerUser):
    """A backend whose prompt measurement raises (a tokenizer bug)."""

    def count_prompt_tokens(self, previous_summary: str | None, evidence: tuple[Evidence, ...]) -> int:
        raise RuntimeError("tokenizer bug")


def test_a_request_whose_prompt_cannot_be_measured_fails_instead_of_stranding_the_user() -> None:
    """If count_prompt_tokens raises while a request is built, the model is not called and a failure result
    (engine_error) is sent, so the user's attempt is counted (and it will degrade and park) instead of its
    slot staying taken forever."""
    backend = BrokenTokenizer({"u": 0.0})

    async def go() -> list[FoldResult]:
        sched, sent = make(backend, {"u": 0}, events=2)  # one event is never measured: it is always tried
        task = asyncio.create_task(sched.run())
        while not sent:
            await asyncio.sleep(0.01)
        await sched.stop()
        await asyncio.gather(task, return_exceptions=True)
        return sent

    sent = asyncio.run(go())
    assert backend.log == []  # the model was never called
    assert sent[0].outcome.reason == "engine_error" and sent[0].event_ids == ("u-1", "u-2")


def test_an_update_reads_its_evidence_in_event_time_order() -> None:
    """Events that arrived out of order (different producers) are asked for in event-time order, ties by arrival."""
    backend = LedgerBackend(max_concurrency=1)
    arrivals = [("e-30", 30), ("e-10", 10), ("e-20", 20), ("e-10b", 10)]
    pending = st.Pending(epoch=1, events=tuple(st.PendingEvent(event_id=i, evidence=Evidence(event_id=i), ts_ms=t,
                         produced_ms=0, accepted_ms=0, tokens=1) for i, t in arrivals))  # fmt: skip
    sent: list[FoldResult] = []

    async def send(partition: int, result: FoldResult) -> None:
        sent.append(result)

    async def go() -> None:
        sched = FoldScheduler(backend=backend, policy=FlushPolicy.from_settings(FLUSH, 1000), flush=FLUSH,
                              plan=st.RetryPlan(2, 2, 0.1, 1.0), read_state=lambda u: (st.Meta(), pending, None),
                              send_result=send, metrics=StreamMetrics(), user_key=lambda u: u)  # fmt: skip
        sched.on_assigned({0})
        view = st.view_of(0, st.Meta(), pending)
        assert view is not None
        sched.on_recovered({"u": view}, {})
        task = asyncio.create_task(sched.run())
        while not sent:
            await asyncio.sleep(0.01)
        await sched.stop()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert sent[0].event_ids == ("e-10", "e-10b", "e-20", "e-30")
    assert [e.event_id for e in backend.requests[0].evidence] == ["e-10", "e-10b", "e-20", "e-30"]


def test_backfill_updates_run_at_a_lower_priority_and_take_larger_batches() -> None:
    """A batch of only backfill events is asked at the backfill priority with up to backfill_max_events events;
    a batch with a live event is priority 0."""
    backend = LedgerBackend(max_concurrency=2)

    def pe(i: str, *, backfill: bool) -> st.PendingEvent:
        return st.PendingEvent(event_id=i, evidence=Evidence(event_id=i), ts_ms=int(i[1:]), produced_ms=0,
                               accepted_ms=0, tokens=1, backfill=backfill)  # fmt: skip

    states = {
        "hist": st.Pending(epoch=1, events=tuple(pe(f"h{k}", backfill=True) for k in range(20))),
        "mixed": st.Pending(epoch=1, events=(pe("h1", backfill=True), pe("l2", backfill=False))),
    }
    sent: list[FoldResult] = []

    async def send(partition: int, result: FoldResult) -> None:
        sent.append(result)

    async def go() -> None:
        sched = FoldScheduler(backend=backend, policy=FlushPolicy.from_settings(FLUSH, 1000, 1000), flush=FLUSH,
                              plan=st.RetryPlan(2, 2, 0.1, 1.0), read_state=lambda u: (st.Meta(), states[u], None),
                              send_result=send, metrics=StreamMetrics(), user_key=lambda u: u,
                              backfill_priority=3)  # fmt: skip
        sched.on_assigned({0})
        sched.on_recovered({u: v for u, p in states.items() if (v := st.view_of(0, st.Meta(), p))}, {})
        task = asyncio.create_task(sched.run())
        while len(sent) < 2:
            await asyncio.sleep(0.01)
        await sched.stop()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    by_user = {r.user_id: r for r in backend.requests}
    assert by_user["hist"].priority == 3 and len(by_user["hist"].evidence) == 20  # FLUSH max_events is 8
    assert by_user["mixed"].priority == 0


def test_waiting_users_are_those_due_without_a_slot_and_drain_to_zero() -> None:
    """With a window of 2 and 5 due users, the figures say 3 wait and 2 run; once all are served, none waits."""
    users = {f"u{i}": 0 for i in range(5)}
    backend = SlowPerUser(dict.fromkeys(users, 0.2))

    async def go() -> tuple[PendingFigures, PendingFigures]:
        sched, sent = make(backend, users)
        task = asyncio.create_task(sched.run())
        while sched.running < 2:
            await asyncio.sleep(0.01)
        first = sched.pending_figures()
        while len(sent) < 5:
            await asyncio.sleep(0.01)
        for r in sent:  # the agent applied every result: the users have nothing pending
            sched.observe(r.user_id, None)
            sched.complete(r.user_id, r.request_id)
        sched.step(now_ms())
        last = sched.pending_figures()
        await sched.stop()
        await asyncio.gather(task, return_exceptions=True)
        return first, last

    first, last = asyncio.run(go())
    assert (first.waiting, first.running, first.slots, first.users) == (3, 2, 2, 5), first
    assert (last.waiting, last.running, last.users, last.oldest_age_s) == (0, 0, 0, 0.0), last
