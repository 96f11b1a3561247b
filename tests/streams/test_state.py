"""State transitions of the worker's tables (pure): dedupe, accept, apply by compare-and-set, failures, forget."""

from __future__ import annotations

import msgspec

from prefstream.schemas.evidence import Evidence
from prefstream.streams import state as st

PLAN = st.RetryPlan(retry_limit=2, degraded_attempts=2, backoff_s=1.0, backoff_max_s=8.0)


def pe(event_id: str, ts: int = 0) -> st.PendingEvent:
    return st.PendingEvent(event_id=event_id, evidence=Evidence(event_id=event_id), ts_ms=ts, produced_ms=ts,
                           accepted_ms=ts, tokens=3)  # fmt: skip


def pending_of(*ids: str, epoch: int = 1) -> st.Pending:
    return st.Pending(epoch=epoch, events=tuple(pe(i) for i in ids))


def success(meta: st.Meta, pending: st.Pending | None, ids: tuple[str, ...], base: int = 0, epoch: int = 1) -> st.Applied | st.Rejected:
    return st.apply_success(meta, pending, None, epoch=epoch, base_version=base, event_ids=ids, summary="s",
                            summary_tokens=1, now_ms=5, model="m", prompt_version="p", backend="ledger",
                            prompt_tokens=1, completion_tokens=1)  # fmt: skip


def test_dedupe_remembers_within_horizon_and_bound() -> None:
    """A remembered id is seen; entries older than the horizon and beyond max_ids are dropped."""
    meta = st.Meta()
    k1, k2, k3 = (st.seen_key("u", e) for e in ("a", "b", "c"))
    meta = st.remember(meta, k1, now_ms=1_000_000, horizon_s=100, max_ids=2)
    assert st.has_seen(meta, k1) and not st.has_seen(meta, k2)
    meta = st.remember(meta, k2, now_ms=1_050_000, horizon_s=100, max_ids=2)
    meta = st.remember(meta, k3, now_ms=1_060_000, horizon_s=100, max_ids=2)
    assert not st.has_seen(meta, k1) and st.has_seen(meta, k2) and st.has_seen(meta, k3)
    meta = st.remember(meta, st.seen_key("u", "d"), now_ms=1_200_000, horizon_s=100, max_ids=10)
    assert not st.has_seen(meta, k2) and not st.has_seen(meta, k3)


def test_seen_key_is_per_user() -> None:
    """The same event id of two users are different dedupe keys."""
    assert st.seen_key("u1", "e") != st.seen_key("u2", "e")


def test_success_applies_the_head_and_keeps_later_events() -> None:
    """A result for the first k events bumps the version, removes those, and keeps events that arrived meanwhile."""
    out = success(st.Meta(), pending_of("a", "b", "c"), ("a", "b"))
    assert isinstance(out, st.Applied)
    assert out.meta.version == 1 and out.profile.version == 1 and out.profile.events_applied == 2
    assert out.pending is not None and [e.event_id for e in out.pending.events] == ["c"]


def test_compare_and_set_rejects_stale_results() -> None:
    """A result built on an older version or epoch, or on events no longer pending, changes nothing."""
    meta = st.Meta(version=3)
    assert success(meta, pending_of("a"), ("a",), base=2) == st.Rejected("version")
    assert success(meta, pending_of("a"), ("a",), base=3, epoch=0) == st.Rejected("epoch")
    assert success(meta, pending_of("b"), ("a",), base=3) == st.Rejected("events")


def test_failures_back_off_degrade_then_park() -> None:
    """Failures retry with backoff, halve the batch after retry_limit, and park after the degraded attempts."""
    meta, pending, ids = st.Meta(), pending_of("a", "b", "c", "d"), ("a", "b", "c", "d")
    seen = []
    for _ in range(5):
        out = st.apply_failure(meta, pending, epoch=1, base_version=0, event_ids=ids, reason="engine_error",
                               over_budget=False, now_ms=0, plan=PLAN)  # fmt: skip
        assert isinstance(out, st.Meta)
        meta = out
        seen.append((meta.attempts, meta.batch_cap, meta.parked, st.degraded(meta, PLAN)))
    assert seen == [(1, 0, False, False), (2, 0, False, False), (3, 2, False, True), (4, 2, False, True), (5, 2, True, True)]
    assert st.redrive(meta) == msgspec.structs.replace(meta, parked=False, attempts=0, next_retry_ms=0, batch_cap=0)


def test_forget_keeps_only_dedupe_and_bumps_epoch() -> None:
    """Forget moves to the next epoch with no profile version and keeps the hashed ids."""
    meta = st.remember(st.Meta(epoch=1, version=4, attempts=2, parked=True), st.seen_key("u", "a"), 0, 100, 10)
    after = st.forget(meta, ts_ms=0)
    assert (after.epoch, after.version, after.attempts, after.parked) == (2, 0, 0, False)
    assert st.has_seen(after, st.seen_key("u", "a"))
    # A pending buffer of the old epoch is replaced, not extended.
    assert st.accept(pending_of("x", epoch=1), after, pe("y")).events == (pe("y"),)


def test_a_half_applied_update_is_not_counted_twice() -> None:
    """After a crash between the profile write and the user-record write of one update, the replayed result
    applies again to the same base version; events_applied counts from the profile that update replaced."""
    meta, pending = st.Meta(), pending_of("a", "b")
    first = success(meta, pending, ("a", "b"))
    assert isinstance(first, st.Applied) and first.profile.events_applied == 2
    again = st.apply_success(meta, pending, first.profile, epoch=1, base_version=0, event_ids=("a", "b"),
                             summary="s", summary_tokens=1, now_ms=2, model="m", prompt_version="p", backend="ledger",
                             prompt_tokens=1, completion_tokens=1)  # fmt: skip
    assert isinstance(again, st.Applied) and again.profile == msgspec.structs.replace(first.profile, updated_ms=2)


def test_events_are_read_in_event_time_order_ties_by_arrival() -> None:
    """`in_event_order` sorts pending events by `ts`, keeping arrival order among equal times."""
    events = (pe("late-path", ts=30), pe("a", ts=10), pe("b", ts=20), pe("tie-1", ts=10))
    assert [e.event_id for e in st.in_event_order(events)] == ["a", "tie-1", "b", "late-path"]


def test_success_applies_a_batch_that_is_not_the_head() -> None:
    """A result for events chosen by event time applies even when an earlier-arrived event stays pending,
    and an event that arrived during the update (older than the batch) stays pending for the next one."""
    pending = st.Pending(epoch=1, events=(pe("new", ts=50), pe("old", ts=10), pe("older-late", ts=5)))
    out = success(st.Meta(), pending, ("old",))
    assert isinstance(out, st.Applied)
    assert [e.event_id for e in out.applied] == ["old"]
    assert out.pending is not None and [e.event_id for e in out.pending.events] == ["new", "older-late"]
    assert success(st.Meta(), pending, ("old", "gone")) == st.Rejected("events")


def test_forget_remembers_its_time_and_older_events_are_before_it() -> None:
    """A forget records its event time (the latest of all forgets); events strictly older predate it."""
    meta = st.forget(st.Meta(), ts_ms=1000)
    assert meta.epoch == 2 and meta.forget_ts_ms == 1000
    assert st.before_forget(meta, 999) and not st.before_forget(meta, 1000)
    assert st.forget(meta, ts_ms=10).forget_ts_ms == 1000  # an older forget does not move the line back
    assert not st.before_forget(st.Meta(), -62_135_596_800_000)  # never forgotten: not even year 1 is before it
    assert st.forget(st.Meta(), ts_ms=-5).forget_ts_ms == -5  # a forget dated before 1970 counts too
