"""`prefstream state migrate` and the worker's refusal to start on unmigrated state (item 7).

The fixture `fixtures/legacy-0.1-changelogs.json` holds every changelog record the release before 0.2.0
(commit 1897bf2) wrote in a short run (`fixtures/gen_legacy_changelogs.py` made it, with that release's
own worker): alice's e1-e3 folded into profile v1 and e4 pending, bob's profile then a forget, carol's e1
pending. The Kafka test writes those records back, byte for byte, to the three legacy changelogs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from prefstream.models.backends.ledger import parse_ledger
from prefstream.schemas.profiles import decode_profile
from prefstream.streams.migrate import LegacyState, new_records
from prefstream.streams.store import ProfileRecord, UserRecord
from tests.streams.harness import CI_WORKER_ENV, ROOT, Producer, TopicReader, Worker, event, wait_for

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-0.1-changelogs.json"
LEGACY = json.loads(FIXTURE.read_text())
ALICE_OLD = ["alice-e1", "alice-e2", "alice-e3", "alice-e4"]


def legacy_state() -> LegacyState:
    """The fixture folded the way `read_legacy` folds a topic: the latest value per key, tombstones delete."""
    state = LegacyState()
    for rec in LEGACY["records"]:
        latest = state.tables.setdefault(rec["table"], {}).setdefault(rec["partition"], {})
        state.records += 1
        if rec["value"] is None:
            latest.pop(rec["key"].encode(), None)
        else:
            latest[rec["key"].encode()] = bytes.fromhex(rec["value"])
    return state


def decoded(records: list[tuple[int, bytes, bytes]]) -> dict[bytes, tuple[int, Any]]:
    out: dict[bytes, tuple[int, Any]] = {}
    for partition, key, value in records:
        dec = UserRecord if key.startswith(b"u/") else ProfileRecord
        out[key] = (partition, msgspec.msgpack.decode(value, type=dec))
    return out


def test_legacy_values_become_one_table() -> None:
    """Pure: the legacy snapshot maps to u/ and p/ records on the same partitions, tombstones honoured."""
    records = decoded(new_records(legacy_state()))
    assert sorted(records) == [b"p/alice", b"u/alice", b"u/bob", b"u/carol"]
    part, alice = records[b"u/alice"]
    assert part == 1 and alice.meta.epoch == 1 and alice.meta.version == 1
    assert alice.pending is not None and [e.event_id for e in alice.pending.events] == ["alice-e4"]
    part, profile = records[b"p/alice"]
    assert part == 1 and parse_ledger(profile.profile.summary) == ALICE_OLD[:3] and profile.profile.version == 1
    _, bob = records[b"u/bob"]  # forgotten: next epoch, dedupe memory kept, nothing else
    assert bob.meta.epoch == 2 and bob.meta.version == 0 and bob.pending is None and len(bob.meta.seen) > 0
    part, carol = records[b"u/carol"]
    assert part == 0 and carol.pending is not None and [e.event_id for e in carol.pending.events] == ["carol-e1"]
    assert new_records(legacy_state()) == new_records(legacy_state())  # deterministic: a rerun writes the same


def prefstream(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefstream.cli", *args], env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    # The fixture's dedupe memory was written on 2026-12-01: a long horizon keeps it whenever the test runs.
    return {**test_env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": str(LEGACY["partitions"]),
            "PREFSTREAM_DEDUPE_HORIZON_S": str(100 * 365 * 86400)}  # fmt: skip


def write_legacy(env: dict[str, str], kafka_topics: Callable[..., str]) -> None:
    """The fixture's records, to the legacy changelogs, on their partitions and in their order."""
    from kafka import KafkaProducer

    app_id = env["PREFSTREAM_APP_ID"]
    for table in ("meta", "pending", "profile"):
        kafka_topics(f"{app_id}-{table}-changelog", LEGACY["partitions"], {"cleanup.policy": "compact"})
    producer = KafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], acks="all")
    for rec in LEGACY["records"]:
        value = None if rec["value"] is None else bytes.fromhex(rec["value"])
        producer.send(f"{app_id}-{rec['table']}-changelog", key=rec["key"].encode(), value=value,
                      partition=rec["partition"])  # fmt: skip
    producer.flush()
    producer.close()


def state_changelog(env: dict[str, str]) -> dict[bytes, bytes | None]:
    """The latest value per key of the new state changelog."""
    reader = TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], f"{env['PREFSTREAM_APP_ID']}-state-changelog")
    count = -1
    while count != len(reader.poll()):
        count = len(reader.records)
    return {r.key: r.value for r in reader.records}


def summary(worker: Worker, user: str) -> list[str] | None:
    status, body = worker.get(f"/profiles/{user}")
    return parse_ledger(decode_profile(body).summary) if status == 200 else None


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_migrate_then_serve(env: dict[str, str], kafka_topics: Callable[..., str], tmp_path: Path) -> None:
    """Unmigrated legacy state stops the worker with one line; migrate refuses while the group has members and
    once the new changelog has records (unless --force); after it, the worker serves the old profile, folds
    the old pending events before new ones, and remembers old event ids."""
    write_legacy(env, kafka_topics)
    app_id = env["PREFSTREAM_APP_ID"]

    # 1. A worker of this release refuses to start on the unmigrated state, in one line, exit 2.
    refused = prefstream(env, "worker")
    assert refused.returncode == 2, refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("prefstream worker: refusing to start: state of a release before 0.2.0")
    assert "prefstream state migrate" in line and f"{app_id}-state-changelog" in line

    # 2. Refused while the consumer group has an active member.
    from kafka import KafkaConsumer

    member = KafkaConsumer(f"{app_id}-meta-changelog", bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                           group_id=app_id, enable_auto_commit=False)  # fmt: skip
    try:
        wait_for(lambda: bool(member.poll(timeout_ms=200) is not None and member.assignment()), 30, "group joined")
        busy = prefstream(env, "state", "migrate")
    finally:
        member.close()
    assert busy.returncode == 2, busy.stdout + busy.stderr
    assert "active member" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1

    # 3. The migration (the member left with close(): no wait for the session timeout).
    done = prefstream(env, "state", "migrate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrated 3 user record(s) and 1 profile(s) on partition(s) 0,1" in done.stdout
    first = state_changelog(env)
    assert sorted(first) == [b"p/alice", b"u/alice", b"u/bob", b"u/carol"]
    assert not any(k.startswith(b"o/") for k in first)

    # 4. Not twice, unless forced; forced, it writes the same values again (idempotent).
    again = prefstream(env, "state", "migrate")
    assert again.returncode == 2 and "already has 4 record(s)" in again.stderr, again.stderr
    forced = prefstream(env, "state", "migrate", "--force")
    assert forced.returncode == 0, forced.stderr
    assert state_changelog(env) == first

    # 5. The worker serves the migrated state.
    worker = Worker(env, "a", tmp_path).start()
    try:
        worker.wait_ready()
        assert summary(worker, "bob") is None  # forgotten before the upgrade
        # The old pending event is long overdue (PREFSTREAM_FLUSH_MAX_WAIT_S): folded after the old profile.
        wait_for(lambda: summary(worker, "alice") == ALICE_OLD, 60, "alice's pending event folded",
                 lambda: (summary(worker, "alice"), worker.tail()))  # fmt: skip
        wait_for(lambda: summary(worker, "carol") == ["carol-e1"], 60, "carol's pending event folded")
        producer = Producer(env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_EVENTS_TOPIC"], LEGACY["partitions"])
        producer.send(event("alice", "alice-e5"))
        producer.flush()
        wait_for(lambda: summary(worker, "alice") == [*ALICE_OLD, "alice-e5"], 60, "alice's new event folded",
                 lambda: summary(worker, "alice"))  # fmt: skip
        # Dedupe memory survived: ids accepted by the old release (bob's from before his forget too) are dropped.
        producer.send(event("alice", "alice-e2"))
        producer.send(event("bob", "bob-e1"))
        producer.send(event("carol", "carol-e1"))
        producer.flush()
        wait_for(lambda: worker.metric("prefstream_events_duplicate_total") == 3, 30, "duplicates counted",
                 lambda: worker.metric("prefstream_events_duplicate_total"))  # fmt: skip
        time.sleep(3)  # would-be updates (FLUSH_MAX_WAIT_S 2 s) had time to happen
        assert summary(worker, "alice") == [*ALICE_OLD, "alice-e5"]
        assert summary(worker, "bob") is None and summary(worker, "carol") == ["carol-e1"]
        assert worker.metric("prefstream_events_accepted_total") == 1
        assert worker.log_lines("legacy_changelogs_present")  # the operator is told to delete them
    finally:
        worker.stop()

    # 6. The legacy changelogs (forgets no longer reach them) are deleted on request.
    deleted = prefstream(env, "state", "migrate", "--delete-legacy")
    assert deleted.returncode == 0 and f"{app_id}-meta-changelog" in deleted.stdout, deleted.stdout + deleted.stderr
    assert "migrated" not in deleted.stdout  # already migrated: nothing written over the worker's state
