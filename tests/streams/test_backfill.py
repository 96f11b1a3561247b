"""Backfill against the real broker: histories go through the stream (`{app_id}-backfill`), folded in as few
updates as the token budget allows, in event-time order, once each with live events mixed in; a killed
backfill resumes where the broker confirmed it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prefstream.models.backends.ledger import LedgerBackend, parse_ledger
from prefstream.schemas.evidence import to_evidence
from prefstream.schemas.decode import decode_event
from prefstream.settings import LimitSettings
from prefstream.streams.policy import select_batch
from tests.streams.harness import ROOT, CI_WORKER_ENV, ProfileLog, Producer, Worker, event, forget, wait_for

SETTLE_S = 90.0
T0 = 1_700_000_000_000  # history: long before the live events of the tests (harness events: 1_764_...)
BUDGET = 120  # ledger tokens: 8 + one per summarised id + 4 per pair event


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": "3", "PREFSTREAM_FLUSH_TOKEN_BUDGET": str(BUDGET)}


def history_event(user: str, i: int) -> dict[str, object]:
    return event(user, f"{user}-h{i:03d}", ts=T0 + i * 60_000)


def expected_updates(n: int) -> int:
    """Updates a history of n pair events takes when folded greedily under BUDGET (the ledger's token count)."""
    ledger = LedgerBackend()
    ev = to_evidence(decode_event(None, json.dumps(history_event("x", 0)).encode(), LimitSettings()))
    summary: list[str] = []
    updates = 0
    while n:
        text = "\n".join(summary) or None
        k = select_batch(n, 1000, BUDGET, lambda k: ledger.count_prompt_tokens(text, (ev,) * k))
        summary += ["x"] * k
        n -= k
        updates += 1
    return updates


def backfill(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "prefstream.cli", "backfill", "--no-progress", *args],
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip


def write_history(path: Path, users: list[str], per_user: int, *, extra: list[str] = ()) -> None:
    lines = [json.dumps(history_event(u, i)) for u in users for i in range(per_user)]
    random.Random(7).shuffle(lines)  # the file is in no order: the tool and the worker order by ts
    path.write_text("\n".join([*lines, *extra]) + "\n")


def batches(history: list[object]) -> list[list[str]]:
    out, before = [], 0
    for p in history:
        ids = parse_ledger(p.summary)  # type: ignore[attr-defined]
        out.append(ids[before:])
        before = len(ids)
    return out


@pytest.mark.timeout(300)
def test_backfill_with_live_events_mixed_in(env: dict[str, str], worker: Worker, tmp_path: Path) -> None:
    """Every history and live event is applied once and each update reads its events by ts; users with only a
    history take exactly the greedy number of updates; an event both live and in the history counts once."""
    bootstrap, partitions = env["KAFKA_BOOTSTRAP_SERVERS"], int(env["PREFSTREAM_PARTITIONS"])
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], partitions)
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    users, per_user = [f"b{i:02d}" for i in range(10)], 30
    early, late, only = users[:3], users[3:6], users[6:]
    # Early live copies of two history events (same ids and times): applied live, the history copies are duplicates.
    for u in early:
        for i in (0, 5, 9):
            producer.send(history_event(u, i))
    producer.flush()
    wait_for(lambda: (profiles.poll(), all(profiles.last(u) for u in early))[1], SETTLE_S, "early live profiles",
             worker.tail)  # fmt: skip
    path = tmp_path / "history.jsonl"
    write_history(path, users, per_user, extra=["{not json", json.dumps(forget("b00", "gdpr-0"))])
    proc = backfill(env, str(path), "--chunk-bytes", "2000")  # several records per user: the hold is exercised
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert "skipped 1 invalid line(s)" in out and "skipped 1 forget event(s)" in out, out
    accepted = 'outcome="accepted"'
    want = len(users) * per_user - 3 * len(early)
    wait_for(lambda: worker.metric("prefstream_backfill_events_total", accepted) == want, SETTLE_S,
             "history accepted", lambda: (worker.metric("prefstream_backfill_events_total", accepted), worker.tail()))
    # Late live events: new ones (after the history) and a copy of a history event.
    for u in late:
        producer.send(event(u, f"{u}-live-1"))
        producer.send(history_event(u, 3))
        producer.send(event(u, f"{u}-live-2"))
    producer.flush()

    expect = {u: {f"{u}-h{i:03d}" for i in range(per_user)} for u in users}
    for u in late:
        expect[u] |= {f"{u}-live-1", f"{u}-live-2"}

    def settled() -> bool:
        profiles.poll()
        return all((p := profiles.last(u)) is not None and p.events_applied == len(expect[u]) for u in users)

    wait_for(settled, SETTLE_S, "every event applied", lambda: ({u: profiles.last(u) for u in users}, worker.tail()))
    ts = {f"{u}-h{i:03d}": T0 + i * 60_000 for u in users for i in range(per_user)}
    for u in users:
        history = [p for p in profiles.by_user[u] if p is not None]
        folded = [i for b in batches(history) for i in b]
        assert sorted(folded) == sorted(expect[u]), (u, folded)  # each event exactly once
        for batch in batches(history):
            times = [ts.get(i, 2**62) for i in batch]  # live events happened after the whole history
            assert times == sorted(times), f"{u}: an update read {batch} out of event-time order"
        if u in late:
            assert folded[-2:] == [f"{u}-live-1", f"{u}-live-2"], folded  # the history went before them
    for u in only:
        assert len([p for p in profiles.by_user[u] if p]) == expected_updates(per_user), profiles.by_user[u]
    assert expected_updates(per_user) < per_user / 8  # far fewer than the live path's batches of 3 to 32
    assert worker.metric("prefstream_backfill_events_total", 'outcome="duplicate"') == 3 * len(early)


@pytest.mark.timeout(300)
def test_a_killed_backfill_resumes(env: dict[str, str], worker: Worker, tmp_path: Path) -> None:
    """A backfill killed mid-way resumes after the last user the broker confirmed; every event is applied once."""
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    users, per_user = [f"k{i:02d}" for i in range(16)], 10
    path, state = tmp_path / "history.jsonl", tmp_path / "history.jsonl.backfill-state.json"
    write_history(path, users, per_user)
    proc = backfill(env, str(path), "--rate", "40")  # 160 events at 40/s: about 4 s
    wait_for(lambda: state.exists() and json.loads(state.read_text())["users_done"] >= 3, 60, "some users sent")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    done = json.loads(state.read_text())["users_done"]
    assert done < len(users), "the backfill finished before it was killed: nothing to resume"
    proc = backfill(env, str(path))
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0 and f"resuming after {done} of {len(users)} users" in out, out

    def settled() -> bool:
        profiles.poll()
        return all((p := profiles.last(u)) is not None and p.events_applied == per_user for u in users)

    wait_for(settled, SETTLE_S, "every history applied", lambda: ({u: profiles.last(u) for u in users}, worker.tail()))
    for u in users:
        assert sorted(parse_ledger(profiles.last(u).summary)) == [f"{u}-h{i:03d}" for i in range(per_user)]  # type: ignore[union-attr]
