"""The backfill tool's pure parts: validation and grouping, chunking, the rate limit, the resume file;
and the flush policy's hold while a history is arriving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefstream.settings import Settings
from prefstream.streams.backfill import BackfillError, RateLimit, State, chunks, read_history
from prefstream.streams.policy import FlushPolicy, UserView
from prefstream.settings import FlushSettings
from tests.streams.harness import event, forget


def line(value: dict[str, object]) -> bytes:
    return json.dumps(value).encode()


def test_history_is_validated_grouped_by_user_key_and_ordered_by_time() -> None:
    """Invalid lines and forgets are skipped and counted; a tenant's user is its own key; events go by ts."""
    values = [line(event("u1", "b", ts=20)), b"{bad", line(event("u1", "a", ts=10)), line(forget("u1", "f")),
              line(event("u1", "c", ts=10, tenant="shop")), b"", line(event("u1", "a2", ts=10))]  # fmt: skip
    h = read_history(values, Settings.from_env({}))
    assert (h.invalid, h.first_invalid, h.forgets, h.events) == (1, [2], 1, 4)
    ordered = {k: [json.loads(v)["event_id"] for v in vs] for k, vs in h.ordered()}
    assert ordered == {"shop/u1": ["c"], "u1": ["a", "a2", "b"]}  # ties by source order


def test_chunks_hold_about_max_bytes_and_the_last_is_final() -> None:
    """Events are packed up to the byte bound (a larger event alone); only the last chunk is final."""
    values = [b"x" * 40, b"x" * 40, b"x" * 200, b"x" * 10]
    assert [(list(map(len, c)), f) for c, f in chunks(values, 100)] == [([40, 40], False), ([200], False), ([10], True)]
    assert [(len(c), f) for c, f in chunks([b"x"], 100)] == [(1, True)]


def test_rate_limit_sleeps_for_what_exceeds_the_burst() -> None:
    """At 10 events/s, 10 go at once, the next 5 wait half a second; 0 is unlimited."""
    now, slept = [0.0], []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limit = RateLimit(10, clock=lambda: now[0], sleep=sleep)
    limit.wait(10)
    limit.wait(5)
    assert slept == [pytest.approx(0.5)]
    RateLimit(0, sleep=lambda s: pytest.fail("unlimited must not sleep")).wait(10**6)


def test_resume_file_is_per_source(tmp_path: Path) -> None:
    """A saved resume point is read back for the same source, refused for another, ignored with --restart."""
    path = tmp_path / "state.json"
    State(path, "digest-a").save(3)
    assert State.load(path, "digest-a", restart=False).users_done == 3
    with pytest.raises(BackfillError, match="another source"):
        State.load(path, "digest-b", restart=False)
    assert State.load(path, "digest-b", restart=True).users_done == 0


def test_a_partial_batch_waits_while_the_history_arrives() -> None:
    """While a backfill is open a batch that is not full waits for the hold; a full one goes at once; a
    backfill batch may take up to the backfill's event limit, not max_events."""
    policy = FlushPolicy.from_settings(FlushSettings(min_events=1, idle_s=0.5, min_interval_s=0), 100, 1000)
    view = UserView(partition=0, epoch=1, count=40, tokens=50, oldest_ms=0, newest_ms=0, backfill=True,
                    hold_until_ms=9_000)  # fmt: skip
    decision = policy.decide(view, saturated=False)
    assert (decision.due_ms, decision.reason) == (9_000, "backfill")  # 40 < 1000 events, 50 < 100 tokens
    full = policy.decide(UserView(**{**view.__dict__, "tokens": 100}), saturated=False)
    assert (full.due_ms, full.reason) == (0, "full")
    live = policy.decide(UserView(**{**view.__dict__, "backfill": False, "hold_until_ms": 0}), saturated=False)
    assert (live.due_ms, live.reason) == (0, "full")  # 40 live events are more than max_events (32)
