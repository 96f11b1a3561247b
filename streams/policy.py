"""The flush policy: when a user's pending events become a model update, and which of them.

Pure functions of a user's `UserView`, the time and whether the model is saturated. The precedence,
strongest first (also in docs/streams.md and `FlushSettings`):

1. never two updates in flight for one user (the scheduler does not ask while one is);
2. a parked user waits for `prefstream redrive`;
3. a failed update waits for its retry backoff;
4. `min_interval` since the user's last applied update (cost control);
5. then the update is due at the earliest of: the batch is full (`max_events`, or the degraded batch
   cap, or the token budget reached), the oldest pending event is `max_wait` old, or the user has been
   idle for `idle` with at least `min_events` pending (`saturated_min_events` while every model slot
   is busy, so that users accumulate larger batches under load).
6. while a user's backfill is still arriving (`prefstream backfill`), a batch that is not full waits
   until `hold_until_ms` (the last backfill record + `PREFSTREAM_BACKFILL_HOLD_S`), so a history is folded
   in as few updates as the token budget allows; batches with backfill events take up to
   `backfill_max_events` events instead of `max_events`.

`min_interval <= max_wait` is enforced by the settings, so an event never waits longer than
`max_wait` (plus the tick) for an idle model unless its user is failing or already has an update in
flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prefstream.settings import FlushSettings

__all__ = ["Decision", "FlushPolicy", "UserView", "select_batch"]


@dataclass(frozen=True)
class UserView:
    """What the policy needs to know about one user's pending state (no user text)."""

    partition: int
    epoch: int
    count: int
    tokens: int  # estimated prompt tokens of the pending evidence plus the current summary
    oldest_ms: int  # accept time of the oldest pending event
    newest_ms: int  # accept time of the newest pending event
    last_update_ms: int = 0
    next_retry_ms: int = 0
    parked: bool = False
    batch_cap: int = 0
    backfill: bool = False  # some pending events are a backfill: the batch limit is the backfill's
    hold_until_ms: int = 0  # a backfill of this user is still arriving: a partial batch waits until then


@dataclass(frozen=True)
class Decision:
    """When the user's next update is due (None: not while the state stays as it is) and why."""

    due_ms: int | None
    reason: str

    def ready(self, now_ms: int) -> bool:
        return self.due_ms is not None and self.due_ms <= now_ms


@dataclass(frozen=True)
class FlushPolicy:
    min_events: int
    max_events: int
    token_budget: int
    max_wait_ms: int
    idle_ms: int
    min_interval_ms: int
    saturated_min_events: int
    backfill_max_events: int = 1000

    @classmethod
    def from_settings(cls, flush: FlushSettings, backend_budget: int, backfill_max_events: int = 1000) -> FlushPolicy:
        budget = flush.token_budget or backend_budget
        return cls(
            min_events=flush.min_events,
            max_events=flush.max_events,
            token_budget=budget,
            max_wait_ms=int(flush.max_wait_s * 1000),
            idle_ms=int(flush.idle_s * 1000),
            min_interval_ms=int(flush.min_interval_s * 1000),
            saturated_min_events=flush.saturated_min_events,
            backfill_max_events=backfill_max_events,
        )

    def batch_limit(self, view: UserView) -> int:
        most = self.backfill_max_events if view.backfill else self.max_events
        return min(most, view.batch_cap) if view.batch_cap else most

    def decide(self, view: UserView, *, saturated: bool) -> Decision:
        """When `view`'s next update is due. Applies the precedence in the module docstring."""
        if view.count <= 0:
            return Decision(None, "empty")
        if view.parked:
            return Decision(None, "parked")
        earliest = max(view.next_retry_ms, view.last_update_ms + self.min_interval_ms if view.last_update_ms else 0)
        min_events = self.saturated_min_events if saturated else self.min_events
        if view.count >= self.batch_limit(view) or view.tokens >= self.token_budget:
            due, reason = 0, "full"
        else:
            due, reason = view.oldest_ms + self.max_wait_ms, "max_wait"
            if view.count >= min_events and view.newest_ms + self.idle_ms < due:
                due, reason = view.newest_ms + self.idle_ms, "idle"
            if view.hold_until_ms > due:
                # The user's history is still arriving: a partial batch now would cost an extra update.
                due, reason = view.hold_until_ms, "backfill"
        if earliest > due:
            reason = "retry" if view.next_retry_ms >= earliest else reason
            due = earliest
        return Decision(due, reason)


def select_batch(count: int, limit: int, budget: int, tokens_for: Callable[[int], int]) -> int:
    """How many of the first `count` pending events go into the update: the most, up to `limit`, whose
    prompt (`tokens_for(n)`, counted with the model's tokenizer) fits `budget`; at least one, so a single
    event larger than the budget is still tried (the backend then reports `over_budget`)."""
    hi = min(count, limit)
    if hi <= 1 or tokens_for(hi) <= budget:
        return max(hi, 0)
    lo = 1  # invariant: lo fits or is the floor; hi does not fit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tokens_for(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo
