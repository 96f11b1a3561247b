"""The fold scheduler: keeps the model's window full, off the acknowledgement path.

It is an in-process service, not an agent: it never holds a Kafka message, so a generation that runs
for minutes never delays an offset commit or a rebalance. It

1. keeps a `UserView` per user with pending events in the partitions this worker owns (the agent
   reports every change; a rebalance rebuilds the views from the tables), indexed by the time the
   policy says it becomes due (a heap), so a wake-up costs O(due users · log users), not O(users);
2. asks the flush policy which users are due, oldest first, and starts one `model.update()` task per
   user while fewer than `backend.max_concurrency` are running (a sliding window: a slot frees as soon
   as its request ends, no lockstep batches);
3. sends each finished outcome to the co-partitioned results topic, where the agent applies it by
   compare-and-set; the user's slot stays taken until the agent reports it applied (or the watchdog
   gives up), so a user never has two updates in flight;
4. on a rebalance, cancels the requests of partitions that moved away (the backend aborts them) and,
   for partitions it gains, waits until results already on the results topic are applied before asking
   again: only requests known to be lost are re-sent.

In-flight bookkeeping is memory only: a partition is owned by one worker, and after a crash the new
owner finds the events still pending in the table and asks again (a duplicate result loses the CAS).
"""

from __future__ import annotations

import asyncio
import heapq
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from prefstream.models.errors import FailureReason
from prefstream.models.interface import PreferenceModel, UpdateFailure, UpdateRequest, UpdateSuccess
from prefstream.settings import FlushSettings
from prefstream.streams.metrics import PendingFigures, StreamMetrics
from prefstream.streams.policy import FlushPolicy, UserView, select_batch
from prefstream.streams.records import FoldResult
from prefstream.streams.tenancy import Tenancy, tenant_of
from prefstream.streams.state import Meta, Pending, ProfileState, RetryPlan, degraded, in_event_order

log = structlog.get_logger(__name__)

__all__ = ["FoldScheduler", "StateReader"]

#: Reads (meta, pending, profile) of a user from the local tables.
StateReader = Callable[[str], tuple[Meta, Pending | None, ProfileState | None]]
#: Sends a result to the results topic partition; returns once the broker has it.
ResultSender = Callable[[int, FoldResult], Awaitable[None]]
#: Hashes a user id for logs (never log the id itself).
UserKey = Callable[[str], str]

_MIN_STEP_S = 0.02  # coalesce bursts of wake-ups: one scan per 20 ms at most
_SEND_ATTEMPTS = 5


@dataclass
class InFlight:
    request_id: str
    partition: int
    task: asyncio.Task[None] | None = None
    delivered_at: float | None = None  # monotonic time the result reached the broker


@dataclass
class _Gate:
    highwater: int  # results-topic offset the agent must pass before this partition is asked again
    deadline: float


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class FoldScheduler:
    backend: PreferenceModel
    policy: FlushPolicy
    flush: FlushSettings
    plan: RetryPlan
    read_state: StateReader
    send_result: ResultSender
    metrics: StreamMetrics
    user_key: UserKey
    on_fatal: Callable[[BaseException], None] = lambda exc: None
    tenancy: Tenancy | None = None  # per-tenant pending counts and token limits (streams.tenancy)
    backfill_priority: int = 1  # engine priority of backfill-only updates (live: 0; lower runs first)

    views: dict[str, UserView] = field(default_factory=dict)
    inflight: dict[str, InFlight] = field(default_factory=dict)
    owned: set[int] = field(default_factory=set)
    running: int = 0
    waiting: int = 0  # due users left without a slot by the last pass (PendingFigures.waiting)
    paused: bool = True  # until the first assignment has recovered
    _gates: dict[int, _Gate] = field(default_factory=dict)
    _results_next: dict[int, int] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopped: bool = False
    # The due index. A user's view has one due time when the model is idle (`decide(saturated=False)`);
    # the saturated one is never earlier (it only raises `min_events`), so it is a lower bound either way.
    _due: dict[str, int] = field(default_factory=dict)  # user -> due time of its current view
    _heap: list[tuple[int, str]] = field(default_factory=list)  # (due, user); stale entries skipped on pop
    _ready: set[str] = field(default_factory=set)  # users past their due time: in flight, gated or waiting a slot

    # --- reports from the agent (same event loop, never awaited) --------------------------------

    def observe(self, user_id: str, view: UserView | None) -> None:
        """The user's pending state changed (None: nothing pending any more)."""
        if view is None:
            self.views.pop(user_id, None)
        else:
            self.views[user_id] = view
        self._index(user_id, view)
        if self.tenancy is not None:
            self.tenancy.limits.observe(user_id, view)
        self._wake.set()

    def complete(self, user_id: str, request_id: str) -> None:
        """The agent handled the result of `request_id`: the user's slot is free again."""
        current = self.inflight.get(user_id)
        if current is not None and current.request_id == request_id:
            del self.inflight[user_id]
            self._wake.set()

    def forget(self, user_id: str) -> None:
        """The user was forgotten: abort its update (its result would lose the CAS anyway)."""
        self.views.pop(user_id, None)
        self._index(user_id, None)
        if self.tenancy is not None:
            self.tenancy.limits.observe(user_id, None)
        self._abort(user_id, "forget")

    def result_seen(self, partition: int, offset: int) -> None:
        """The agent handled results-topic `offset` of `partition` (releases the post-assignment gate)."""
        self._results_next[partition] = max(self._results_next.get(partition, 0), offset + 1)
        if partition in self._gates:
            self._wake.set()

    # --- rebalance ------------------------------------------------------------------------------

    def on_revoked(self) -> None:
        """A rebalance started: start nothing new until the assignment is known."""
        self.paused = True
        self.waiting = 0  # the next pass after recovery counts again, for the partitions kept

    def on_assigned(self, partitions: set[int]) -> None:
        """Cancel the requests of partitions that moved away; drop their views."""
        self.owned = set(partitions)
        for user_id, inf in list(self.inflight.items()):
            if inf.partition not in self.owned:
                self._abort(user_id, "revoked")
        self.views = {u: v for u, v in self.views.items() if v.partition in self.owned}
        self._reindex()
        self._gates = {p: g for p, g in self._gates.items() if p in self.owned}
        if self.tenancy is not None:
            self.tenancy.limits.reset(self.views)

    def on_recovered(self, views: dict[str, UserView], highwaters: dict[int, int]) -> None:
        """Tables are recovered: replace the views, gate partitions with unapplied results, resume."""
        self.views = {u: v for u, v in views.items() if v.partition in self.owned}
        self._reindex()
        if self.tenancy is not None:
            self.tenancy.limits.reset(self.views)
        deadline = time.monotonic() + self.flush.results_gate_timeout_s
        for partition, hw in highwaters.items():
            if partition in self.owned and self._results_next.get(partition, 0) < hw:
                self._gates[partition] = _Gate(hw, deadline)
        self.paused = False
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Evaluate, start due requests, sleep until the next due time, a report or the tick."""
        while not self._stopped:
            self._wake.clear()
            try:
                self.backend.check_health()
                timeout = self.step(now_ms())
            except Exception as exc:  # a dead backend (or a bug) must stop the worker, not the loop
                log.error("scheduler_fatal", error=type(exc).__name__, message=str(exc))
                self.on_fatal(exc)
                return
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except TimeoutError:
                pass
            await asyncio.sleep(_MIN_STEP_S)

    def step(self, now: int) -> float:
        """One scheduling pass. Returns how long to sleep at most."""
        tick = self.flush.tick_s
        self._expire_watchdog()
        if self.paused:
            return tick
        self._release_gates()
        self._pop_due(now)
        free = self.backend.max_concurrency - self.running
        waiting = [(u, self.views[u]) for u in self._ready if u not in self.inflight]
        waiting = [(u, v) for u, v in waiting if v.partition not in self._gates]
        due = [(u, v) for u, v in waiting if self.policy.decide(v, saturated=False).ready(now)]
        saturated = free <= 0 or len(due) > free
        if saturated:
            # Under load, small batches wait for more events (unless full or too old).
            due = [(u, v) for u, v in due if self.policy.decide(v, saturated=True).ready(now)]
        if self.tenancy is not None:  # a tenant whose model tokens of this minute are spent waits
            due = [(u, v) for u, v in due if self.tenancy.may_start(u)]
        # Live users first, then backfills; oldest first; ties by user id (not by the ready set's order).
        due.sort(key=lambda uv: (uv[1].backfill, uv[1].oldest_ms, uv[0]))
        for user_id, view in due[: max(0, free)]:
            self._start(user_id, view)
        # Users the model could serve now if it had more slots: the scale-out signal that consumer lag is not.
        self.waiting = max(0, len(due) - max(0, free))
        # The next wake-up: the earliest due time still ahead (a user held back by saturation, or the
        # head of the index; the head may be in flight or gated, which only wakes the loop early).
        pending_due = [
            d.due_ms
            for u, v in waiting
            if u not in self.inflight
            for d in [self.policy.decide(v, saturated=saturated)]
            if d.due_ms is not None and d.due_ms > now
        ]
        head = self._head()
        if head is not None:
            pending_due.append(head)
        if pending_due:
            return max(0.0, min(tick, (min(pending_due) - now) / 1000))
        return tick

    # --- the due index --------------------------------------------------------------------------

    def _index(self, user_id: str, view: UserView | None) -> None:
        """Record the due time of the user's new view (None: the user waits for nothing)."""
        self._ready.discard(user_id)
        due = None if view is None else self.policy.decide(view, saturated=False).due_ms
        if due is None:
            self._due.pop(user_id, None)
            return
        self._due[user_id] = due
        heapq.heappush(self._heap, (due, user_id))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._rebuild_heap()  # every event pushes an entry: drop the stale ones (amortized O(1) per push)

    def _reindex(self) -> None:
        """The views were replaced wholesale (a rebalance): index them again."""
        self._ready.clear()
        self._due = {}
        for user_id, view in self.views.items():
            due = self.policy.decide(view, saturated=False).due_ms
            if due is not None:
                self._due[user_id] = due
        self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        self._heap = [(due, u) for u, due in self._due.items() if u not in self._ready]
        heapq.heapify(self._heap)

    def _valid(self, entry: tuple[int, str]) -> bool:
        due, user_id = entry
        return self._due.get(user_id) == due and user_id not in self._ready

    def _pop_due(self, now: int) -> None:
        """Move every user whose due time has come from the heap to the ready set."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._valid(entry):
                self._ready.add(entry[1])

    def _head(self) -> int | None:
        """The earliest due time in the heap (stale entries at the top are dropped)."""
        heap = self._heap
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _release_gates(self) -> None:
        mono = time.monotonic()
        for partition, gate in list(self._gates.items()):
            if self._results_next.get(partition, 0) >= gate.highwater:
                del self._gates[partition]
            elif mono > gate.deadline:
                log.warning("results_gate_timeout", partition=partition, highwater=gate.highwater)
                del self._gates[partition]

    def _expire_watchdog(self) -> None:
        mono = time.monotonic()
        for user_id, inf in list(self.inflight.items()):
            if inf.delivered_at is not None and mono - inf.delivered_at > self.flush.apply_timeout_s:
                log.warning("result_not_applied", user=self.user_key(user_id), request_id=inf.request_id)
                del self.inflight[user_id]

    def _start(self, user_id: str, view: UserView) -> None:
        inf = InFlight(request_id=uuid.uuid4().hex, partition=view.partition)
        self.inflight[user_id] = inf
        inf.task = asyncio.create_task(self._request(user_id, inf), name=f"fold-{inf.request_id}")

    def _abort(self, user_id: str, cause: str) -> None:
        inf = self.inflight.pop(user_id, None)
        if inf is not None and inf.task is not None and not inf.task.done():
            inf.task.cancel()
            self.metrics.requests_aborted.labels(cause).inc()
            log.info("update_aborted", user=self.user_key(user_id), request_id=inf.request_id, cause=cause)
        self._wake.set()

    async def stop(self) -> None:
        self._stopped = True
        for user_id in list(self.inflight):
            self._abort(user_id, "shutdown")
        self._wake.set()

    # --- one request ----------------------------------------------------------------------------

    def _build(self, user_id: str, request_id: str) -> tuple[UpdateRequest, tuple[str, ...], int, str] | None:
        """Read the user's state and build the request (synchronous: one consistent snapshot). The last item
        names why the prompt could not be measured ("" when it could): that request fails without a model
        call, so it is counted, degraded and parked like any failure instead of stranding the user."""
        meta, pending, profile = self.read_state(user_id)
        if pending is None or pending.epoch != meta.epoch or not pending.events or meta.parked:
            return None
        summary = profile.summary if profile is not None and profile.epoch == meta.epoch else None
        ordered = in_event_order(pending.events)  # an update reads its evidence in event-time order
        evidence = tuple(e.evidence for e in ordered)
        most = self.policy.backfill_max_events if any(e.backfill for e in ordered) else self.policy.max_events
        limit = min(most, meta.batch_cap) if meta.batch_cap else most
        problem = ""
        try:
            n = select_batch(
                len(evidence),
                limit,
                self.policy.token_budget,
                lambda k: self.backend.count_prompt_tokens(summary, evidence[:k]),
            )
        except Exception as exc:  # a tokenizer bug: fail this request, not the scheduler
            n, problem = min(len(evidence), limit), f"count_prompt_tokens raised {type(exc).__name__}"
        request = UpdateRequest(
            request_id=request_id,
            user_id=user_id,
            epoch=meta.epoch,
            base_version=meta.version,
            previous_summary=summary,
            evidence=evidence[:n],
            degraded=degraded(meta, self.plan),
            tenant=tenant_of(user_id),
            # A history import yields to live traffic in the engine (vLLM: lower priority values run first).
            priority=self.backfill_priority if all(e.backfill for e in ordered[:n]) else 0,
        )
        return request, tuple(e.event_id for e in ordered[:n]), meta.attempts + 1, problem

    async def _request(self, user_id: str, inf: InFlight) -> None:
        built = self._build(user_id, inf.request_id)
        if built is None:
            self.complete(user_id, inf.request_id)
            return
        request, event_ids, attempt, problem = built
        requested = now_ms()
        started = time.monotonic()
        self.running += 1
        try:
            if problem:
                log.error("request_unbuildable", request_id=inf.request_id, error=problem)
                reason = FailureReason.ENGINE_ERROR.value
                outcome: UpdateSuccess | UpdateFailure = UpdateFailure(request_id=request.request_id, reason=reason,
                                                                       message=problem)  # fmt: skip
            else:
                outcome = await self._call(request)
        finally:
            self.running -= 1
            self._wake.set()
        latency = time.monotonic() - started
        ok = isinstance(outcome, UpdateSuccess)
        self.metrics.model_latency.labels("success" if ok else "failure").observe(latency)
        if ok:
            self.metrics.tokens.labels("in", self.backend.name).inc(outcome.usage.prompt_tokens)
            self.metrics.tokens.labels("out", self.backend.name).inc(outcome.usage.completion_tokens)
            if self.tenancy is not None:
                self.tenancy.charge(user_id, outcome.usage.prompt_tokens, outcome.usage.completion_tokens)
        result = FoldResult(
            request_id=inf.request_id,
            user_id=user_id,
            epoch=request.epoch,
            base_version=request.base_version,
            event_ids=event_ids,
            attempt=attempt,
            degraded=request.degraded,
            outcome=outcome,
            backend=self.backend.name,
            requested_ms=requested,
            finished_ms=now_ms(),
            model=self.backend.model_id,
            prompt_version=self.backend.prompt_version,
        )
        for i in range(_SEND_ATTEMPTS):
            try:
                await self.send_result(inf.partition, result)
                inf.delivered_at = time.monotonic()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker did not take it: the result is known lost, retry the send
                log.warning("result_send_failed", request_id=inf.request_id, error=type(exc).__name__, attempt=i + 1)
                await asyncio.sleep(min(10.0, 0.5 * 2**i))
        # Known lost: free the slot; the events are still pending and will be asked for again.
        self.complete(user_id, inf.request_id)

    async def _call(self, request: UpdateRequest) -> UpdateSuccess | UpdateFailure:
        try:
            return await asyncio.wait_for(self.backend.update(request), timeout=self.flush.update_timeout_s)
        except TimeoutError:
            return UpdateFailure(
                request_id=request.request_id,
                reason=FailureReason.TIMEOUT.value,
                message=f"no result within {self.flush.update_timeout_s} s",
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the interface says update() never raises; a backend bug becomes a failure
            log.error("backend_raised", request_id=request.request_id, error=type(exc).__name__)
            return UpdateFailure(
                request_id=request.request_id, reason=FailureReason.ENGINE_ERROR.value, message=type(exc).__name__
            )

    # --- figures for metrics ---------------------------------------------------------------------

    def pending_figures(self) -> PendingFigures:
        views = self.views.values()
        now = now_ms()

        def age(oldest: int | None) -> float:
            return max(0.0, (now - oldest) / 1000) if oldest is not None else 0.0

        return PendingFigures(
            users=len(self.views),
            events=sum(v.count for v in views),
            oldest_age_s=age(min((v.oldest_ms for v in views), default=None)),
            oldest_active_age_s=age(min((v.oldest_ms for v in views if not v.parked), default=None)),
            in_flight=len(self.inflight),
            parked=sum(1 for v in views if v.parked),
            waiting=self.waiting,
            running=self.running,
            slots=self.backend.max_concurrency,
        )
