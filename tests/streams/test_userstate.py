"""The user state the read API reports, and what `prefstream redrive` plans from the parked list (issue #9)."""

from __future__ import annotations

from prefstream.schemas.evidence import Evidence
from prefstream.streams.redrive import plan
from prefstream.streams.state import Meta, Pending, PendingEvent
from prefstream.streams.store import UserRecord
from prefstream.streams.userstate import ParkedList, UserState, user_state


def _pending(epoch: int, n: int) -> Pending:
    events = tuple(PendingEvent(event_id=f"e{i}", evidence=Evidence(event_id=f"e{i}"), ts_ms=0, produced_ms=0,
                                accepted_ms=1_769_847_300_000 + i, tokens=1) for i in range(n))  # fmt: skip
    return Pending(epoch=epoch, events=events)


def test_parked_user_shows_its_waiting_events() -> None:
    """A parked user with no profile yet reports its pending events, attempts and reason, and no retry time."""
    meta = Meta(attempts=5, parked=True, last_failure="engine_error", next_retry_ms=1_769_847_400_000)
    state = user_state("u-1", 3, UserRecord(meta=meta, pending=_pending(1, 7)), None, False, exists=True)
    assert (state.known, state.version, state.pending_events, state.parked, state.failing) == (True, 0, 7, True, True)
    assert (state.attempts, state.last_failure, state.next_retry_at) == (5, "engine_error", None)
    assert state.oldest_pending_at == "2026-01-31T08:15:00.000Z"


def test_failing_user_has_a_retry_time_and_stale_epoch_events_do_not_count() -> None:
    """A failing, unparked user reports when it is retried; events of an older epoch are not pending."""
    meta = Meta(epoch=2, attempts=1, last_failure="timeout", next_retry_ms=1_769_847_400_000)
    state = user_state("u-1", 0, UserRecord(meta=meta, pending=_pending(1, 3)), None, True, exists=True)
    assert (state.pending_events, state.oldest_pending_at, state.updating) == (0, None, True)
    assert state.next_retry_at == "2026-01-31T08:16:40.000Z" and not state.parked


def test_unknown_user_is_reported_as_unknown() -> None:
    """A user the worker never saw is `known: false` with nothing pending."""
    state = user_state("nobody", 1, UserRecord(), None, False, exists=False)
    assert (state.known, state.pending_events, state.failing, state.parked) == (False, 0, False, False)


def _parked(user_id: str, partition: int) -> UserState:
    return user_state(user_id, partition, UserRecord(meta=Meta(parked=True, attempts=5)), None, False, exists=True)


def test_redrive_plan_names_only_parked_users() -> None:
    """Named users who are not parked are reported, not sent; no names means every parked user, by partition."""
    listing = ParkedList(parked=[_parked("a", 0), _parked("b", 1), _parked("c", 0)], workers=2)
    assert plan(listing, []) == ({0: ["a", "c"], 1: ["b"]}, [])
    assert plan(listing, ["b", "nobody", "b"]) == ({1: ["b"]}, ["nobody"])
    assert plan(ParkedList(parked=[], workers=1), ["nobody"]) == ({}, ["nobody"])


def test_parked_and_redrive_without_a_worker_are_one_line() -> None:
    """With no worker's read API at the address, `parked` and `redrive` exit 2 with one line saying what to do."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    for command in (["parked"], ["redrive", "nobody"]):
        done = subprocess.run([sys.executable, "-m", "prefstream.cli", *command, "--api", url], capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            f"prefstream {command[0]}: cannot reach a worker's read API at {url} (ConnectError); start a worker, or "
            "name one with --api URL (its PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT)"
        ]
