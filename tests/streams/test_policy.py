"""The flush policy and batch selection (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as s

from prefstream.settings import FlushSettings
from prefstream.streams.policy import FlushPolicy, UserView, select_batch

POLICY = FlushPolicy.from_settings(FlushSettings(), backend_budget=1000)
NOW = 1_000_000_000


def view(**kw: object) -> UserView:
    base = {"partition": 0, "epoch": 1, "count": 1, "tokens": 10, "oldest_ms": NOW, "newest_ms": NOW}
    return UserView(**{**base, **kw})  # type: ignore[arg-type]


def test_single_event_waits_at_most_max_wait() -> None:
    """With defaults, a lone event of an idle user is due exactly 60 s after it arrived."""
    d = POLICY.decide(view(), saturated=False)
    assert (d.due_ms, d.reason) == (NOW + 60_000, "max_wait")


def test_idle_user_with_min_events_flushes_after_idle_time() -> None:
    """MIN_EVENTS pending and no new event for IDLE_S makes the update due then."""
    d = POLICY.decide(view(count=4, newest_ms=NOW + 1000), saturated=False)
    assert (d.due_ms, d.reason) == (NOW + 1000 + 8_000, "idle")


def test_full_batch_is_due_now() -> None:
    """MAX_EVENTS pending (or the token budget reached) makes the update due immediately."""
    assert POLICY.decide(view(count=32), saturated=False).ready(NOW)
    assert POLICY.decide(view(tokens=1000), saturated=False).ready(NOW)


def test_saturation_raises_min_events() -> None:
    """While the model is saturated, idle users need SATURATED_MIN_EVENTS instead of MIN_EVENTS."""
    v = view(count=4, newest_ms=NOW)
    assert POLICY.decide(v, saturated=False).reason == "idle"
    assert POLICY.decide(v, saturated=True).reason == "max_wait"


def test_min_interval_and_backoff_take_precedence_over_triggers() -> None:
    """A full batch still waits for MIN_INTERVAL_S since the last update and for a retry backoff."""
    d = POLICY.decide(view(count=32, last_update_ms=NOW), saturated=False)
    assert d.due_ms == NOW + 15_000
    d = POLICY.decide(view(count=32, next_retry_ms=NOW + 99_000), saturated=False)
    assert (d.due_ms, d.reason) == (NOW + 99_000, "retry")


def test_parked_and_empty_users_are_never_due() -> None:
    """Parked users wait for a redrive; users without pending events have nothing to do."""
    assert POLICY.decide(view(parked=True, count=40), saturated=False).due_ms is None
    assert POLICY.decide(view(count=0), saturated=False).due_ms is None


def test_degraded_batch_cap_counts_as_full() -> None:
    """A user degraded to a batch cap is due once it has that many events."""
    assert POLICY.decide(view(count=2, batch_cap=2), saturated=False).ready(NOW)


@given(count=s.integers(0, 100), limit=s.integers(1, 64), per=s.integers(1, 50), budget=s.integers(1, 2000))
def test_select_batch_is_the_largest_prefix_that_fits(count: int, limit: int, per: int, budget: int) -> None:
    """The batch is the longest prefix within the limit whose tokens fit the budget, and never empty."""
    n = select_batch(count, limit, budget, lambda k: 7 + per * k)
    if count == 0:
        assert n == 0
        return
    assert 1 <= n <= min(count, limit)
    if n > 1:
        assert 7 + per * n <= budget
    if n < min(count, limit):
        assert 7 + per * (n + 1) > budget
