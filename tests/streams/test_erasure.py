"""Erasure (item 6): after a forget and the documented bounds, none of the user's text is readable anywhere.

Two workers (so one holds the standby replica of the forgotten user's partition) run with short
retention and compaction settings. A user's events carry a distinctive marker string in their text; it
reaches the pending evidence, the profile (the extractive backend copies item text into the summary),
the internal topics, the dead-letter topic (a rejected event), the updates topic (the operator opted in to
summaries there), the kept profile history, and both workers' RocksDB stores. After
the forget and the bounds of docs/streams.md ("Forget"), every topic but the events topic (whose
retention is the documented bound: a forget cannot delete from it) is read from its beginning with a
plain consumer, and both workers' data directories are scanned byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from prefstream.streams.partitioning import partition_for
from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, Worker, event, forget, wait_for

PARTITIONS = 2
#: The bounds under test, short: compaction lag (and so segment roll), tombstone life, transit retention.
BOUND_MS = 2000
SHORT = {
    "PREFSTREAM_MAX_COMPACTION_LAG_MS": str(BOUND_MS),
    "PREFSTREAM_DELETE_RETENTION_MS": str(BOUND_MS),
    "PREFSTREAM_INTERNAL_RETENTION_MS": str(BOUND_MS),
    "PREFSTREAM_DLQ_RETENTION_MS": str(BOUND_MS),
    "PREFSTREAM_FAILURES_RETENTION_MS": str(BOUND_MS),
    "PREFSTREAM_UPDATES_RETENTION_MS": str(BOUND_MS),
}
INSPECTOR_TOKEN = "erasure-test-token-51c0de"


def user_on(partition: int, prefix: str) -> str:
    return next(u for i in range(1000) if partition_for(u := f"{prefix}{i}", PARTITIONS) == partition)


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, **CI_WORKER_ENV, **SHORT, "PREFSTREAM_PARTITIONS": str(PARTITIONS),
            "PREFSTREAM_STANDBY_REPLICAS": "1", "PREFSTREAM_MODEL_BACKEND": "extractive",
            "PREFSTREAM_UPDATES_INCLUDE_SUMMARY": "true", "PREFSTREAM_INSPECTOR_ENABLED": "true",
            "PREFSTREAM_INSPECTOR_TOKEN": INSPECTOR_TOKEN}  # fmt: skip


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for name in ("a", "b"):  # one at a time: the first creates the topics
            started.append(Worker(env, name, tmp_path).start())
            started[-1].wait_ready()
        yield started
    finally:
        for w in started:
            w.stop()


def broker_retention_check_ms(bootstrap: str) -> int:
    """The broker's `log.retention.check.interval.ms`: time-based retention is enforced this often."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        node = admin.describe_cluster()["brokers"][0]["broker_id"]
        described = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(node))], config_filter="all")
        value = described["broker"][str(node)]["log.retention.check.interval.ms"]["value"]
        return int(value)
    finally:
        admin.close()


def topics_to_read(env: dict[str, str]) -> list[str]:
    """Every topic of this deployment except the events topic: the app's internal ones (found on the broker,
    so one faust adds is not missed), the profiles, dead-letter and failures topics."""
    admin = KafkaAdminClient(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        names = admin.list_topics()
    finally:
        admin.close()
    app_id = env["PREFSTREAM_APP_ID"]
    public = {env["PREFSTREAM_PROFILES_TOPIC"], env["PREFSTREAM_DLQ_TOPIC"], env["PREFSTREAM_FAILURES_TOPIC"],
              env["PREFSTREAM_UPDATES_TOPIC"]}
    return sorted(t for t in names if t.startswith(f"{app_id}-") or t in public)


def marker_in_topics(bootstrap: str, topics: list[str], marker: bytes) -> dict[str, list[tuple[int, int]]]:
    """(partition, offset) of every record, from the beginning of each topic, whose key, value or headers hold
    the marker."""
    found: dict[str, list[tuple[int, int]]] = {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            end = consumer.end_offsets(tps)
            todo = [tp for tp in tps if end[tp] > 0]
            consumer.assign(todo)
            if todo:
                consumer.seek_to_beginning(*todo)
            deadline = time.monotonic() + 30
            while todo and time.monotonic() < deadline:
                for tp, msgs in consumer.poll(timeout_ms=300).items():
                    for m in msgs:
                        blobs = [m.key or b"", m.value or b""] + [v or b"" for _, v in m.headers or ()]
                        if any(marker in b for b in blobs):
                            found.setdefault(topic, []).append((tp.partition, m.offset))
                todo = [tp for tp in todo if consumer.position(tp) < end[tp]]
            assert not todo, f"could not read {topic} to its end"
    finally:
        consumer.close()
    return found


def inspect(worker: Worker, user: str) -> tuple[int, Any]:
    """The inspector's view of `user`, asked of `worker` (it routes to the owner)."""
    request = urllib.request.Request(f"{worker.url}/inspector/api/users/{user}",
                                     headers={"Authorization": f"Bearer {INSPECTOR_TOKEN}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def marker_on_disk(root: Path, marker: bytes) -> list[str]:
    """Files under `root` whose bytes hold the marker (RocksDB SST files, WAL, manifests, anything)."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                if marker in path.read_bytes():
                    hits.append(str(path.relative_to(root)))
            except OSError:
                continue
    return sorted(hits)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_forgotten_text_is_gone_everywhere(env: dict[str, str], workers: list[Worker]) -> None:
    """After a forget and the documented bounds, no topic but the events topic, no inspector view (the kept
    history included) and no worker file outside RocksDB's own holds the user's text."""
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    marker = f"ERASEME{uuid.uuid4().hex[:12]}"
    raw_marker = marker.encode()
    victim = user_on(0, "victim")
    neighbours = {p: user_on(p, f"neighbour{p}-") for p in range(PARTITIONS)}
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], PARTITIONS)
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])

    # 1. The victim's text everywhere it can go: pending, profile, results, repartition (a foreign partitioner),
    #    the dead-letter topic (a rejected event), both workers' stores (owner and standby).
    texts = [f"{marker} item {i}" for i in range(4)]
    producer.send(event(victim, "v1", chosen=texts[0], rejected="plain b", query=f"{marker} query"))
    producer.send(event(victim, "v2", chosen=texts[1], rejected="plain b", query="q"))
    producer.send_wrong_partition(event(victim, "v3", chosen=texts[2], rejected="plain b", query="q"))
    producer.send({"event_id": "v-bad", "user_id": victim, "ts": 1, "kind": "teleport", "note": marker})
    producer.flush()

    def published() -> bool:
        profiles.poll()
        last = profiles.last(victim)
        return last is not None and marker in last.summary

    wait_for(published, 60, "the victim's profile", lambda: (profiles.by_user, workers[0].tail()))
    producer.send(event(victim, "v4", chosen=texts[3], rejected="plain b", query="q"))  # left pending
    producer.flush()
    topics = topics_to_read(env)
    before = marker_in_topics(bootstrap, topics, raw_marker)
    app_id = env["PREFSTREAM_APP_ID"]
    for must in (f"{app_id}-state-changelog", f"{app_id}-results", f"{app_id}-repartition",
                 env["PREFSTREAM_PROFILES_TOPIC"], env["PREFSTREAM_DLQ_TOPIC"], env["PREFSTREAM_UPDATES_TOPIC"]):  # fmt: skip
        assert must in before, (must, before)  # the test reads where the text really went
    status, kept = inspect(workers[1], victim)  # through either worker: the kept history holds the text
    assert status == 200 and kept["versions"] and marker in kept["versions"][0]["summary"], (status, kept)

    # 2. Forget; the read API answers 404 at once, through either worker.
    producer.send(forget(victim, "v-forget"))
    producer.flush()
    wait_for(lambda: all(w.get(f"/profiles/{victim}")[0] == 404 for w in workers), 30, "404 after the forget")
    forgotten_at = time.monotonic()

    # 3. The bounds. Compaction never touches a partition's active segment, and Kafka rolls a segment only when
    #    a record is appended once segment.ms (= PREFSTREAM_MAX_COMPACTION_LAG_MS) has passed: traffic after
    #    the bound on every partition (here: other users' events and profiles) makes the tombstoned values
    #    cleanable; the cleaner then removes them (docs/streams.md, "Forget").
    time.sleep(BOUND_MS / 1000 + 0.5)
    for user in neighbours.values():
        for i in range(3):
            producer.send(event(user, f"{user}-n{i}"))
    producer.flush()
    wait_for(lambda: bool(profiles.poll()) and all(profiles.last(u) is not None for u in neighbours.values()), 60,
             "the neighbours' profiles")  # fmt: skip
    check_ms = broker_retention_check_ms(bootstrap)
    bound_s = (BOUND_MS + check_ms) / 1000 + 60  # retention + the broker's check interval + the cleaner + slack
    remaining: dict[str, Any] = {}

    def gone() -> bool:
        remaining.clear()
        remaining.update(marker_in_topics(bootstrap, topics_to_read(env), raw_marker))
        return not remaining

    wait_for(gone, bound_s - (time.monotonic() - forgotten_at), "the marker gone from every topic", lambda: remaining)

    # 4. Nothing of the user is readable from the workers: 404 from both, and the state changelog (what every
    #    owner and standby restores from) holds no record with the text, latest or superseded (checked above).
    for w in workers:
        assert w.get(f"/profiles/{victim}")[0] == 404
        status, view = inspect(w, victim)  # the kept history went with the profile
        assert status == 200 and view["profile"] is None and view["versions"] == [] and view["pending"] == [], view
        assert view["state"]["epoch"] == 2

    # 5. On disk. faust keeps a standby's changelog records in memory until 1000 are buffered, a rebalance or
    #    shutdown, so the workers are stopped first (a graceful stop writes the standby's buffer to its
    #    store). RocksDB does not overwrite a deleted value: it stays in the write-ahead log (and, after a
    #    memtable flush, in SST files) until RocksDB deletes the log or compacts the files. The documented
    #    bound (docs/streams.md, "Forget") is therefore "until RocksDB compacts"; this asserts that the
    #    state table's RocksDB files are the only place the text may remain on disk, and reports them.
    running = {w.name: marker_on_disk(w.data_dir, raw_marker) for w in workers}
    for w in workers:
        w.stop()
    on_disk = {w.name: marker_on_disk(w.data_dir, raw_marker) for w in workers}
    print(f"\nmarker bytes on disk after the forget and the bounds: running {running}, stopped {on_disk}")
    rocksdb_file = re.compile(r"faust/v1/tables/state-\d+\.db/\d+\.(log|sst)")
    stray = [f for files in (*running.values(), *on_disk.values()) for f in files if not rocksdb_file.fullmatch(f)]
    assert not stray, (running, on_disk)
