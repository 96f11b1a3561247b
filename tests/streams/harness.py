"""Test harness for the stream worker: real worker processes, a producer, and readers of the output topics.

Workers run as `python -m prefstream.cli worker` subprocesses, exactly as deployed, each with its own
data directory and web port. Conditions are awaited by polling with a named timeout; on timeout the
assertion message prints the state that was seen and the tail of every worker's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from prefstream.kafka.local import free_port
from prefstream.schemas.deadletter import parse_dead_letter_headers
from prefstream.schemas.profiles import Profile, decode_profile
from prefstream.streams.partitioning import partition_for

ROOT = Path(__file__).resolve().parents[2]

#: faust settings fit for CI: fast failure detection and rebalances, few partitions.
CI_WORKER_ENV = {
    "PREFSTREAM_MODEL_BACKEND": "ledger",
    "PREFSTREAM_SESSION_TIMEOUT_S": "6",
    "PREFSTREAM_HEARTBEAT_INTERVAL_S": "1",
    "PREFSTREAM_REBALANCE_TIMEOUT_S": "20",
    "PREFSTREAM_COMMIT_INTERVAL_S": "0.5",
    "PREFSTREAM_STANDBY_REPLICAS": "0",
    "PREFSTREAM_FLUSH_MIN_EVENTS": "3",
    "PREFSTREAM_FLUSH_IDLE_S": "0.5",
    "PREFSTREAM_FLUSH_MAX_WAIT_S": "2",
    "PREFSTREAM_FLUSH_MIN_INTERVAL_S": "0",
    "PREFSTREAM_FLUSH_TICK_S": "0.2",
    "PREFSTREAM_RETRY_BACKOFF_S": "0.2",
    "PREFSTREAM_RETRY_BACKOFF_MAX_S": "1",
    "PREFSTREAM_RESULTS_GATE_TIMEOUT_S": "10",
    # The apply watchdog's production default (120 s) would outlast the tests' settle windows on a loaded
    # 2-core CI machine; 20 s keeps that recovery path inside them.
    "PREFSTREAM_APPLY_TIMEOUT_S": "20",
    "PREFSTREAM_LOG_FORMAT": "json",
}

START_TIMEOUT_S = 90.0


def event(user_id: str, event_id: str, kind: str = "pair", **extra: Any) -> dict[str, Any]:
    """A valid event of `kind` (pair by default)."""
    base: dict[str, Any] = {"event_id": event_id, "user_id": user_id, "ts": 1_764_000_000_000, "kind": kind}
    if kind == "pair":
        base |= {"chosen": f"answer A for {event_id}", "rejected": "answer B", "query": "which one?"}
    base.update(extra)
    return base


def forget(user_id: str, event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user_id, "ts": 1_764_000_000_000, "kind": "forget"}


#: Kafka clients opened by a test; `tests/streams/conftest.py` closes them after each test, so no client
#: thread outlives the broker and logs connection errors at the end of the session.
OPEN_CLIENTS: list[Producer | TopicReader] = []


@dataclass
class Producer:
    """Produces events the way different clients would."""

    bootstrap: str
    topic: str
    partitions: int
    _producer: KafkaProducer = field(init=False)

    def __post_init__(self) -> None:
        self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        OPEN_CLIENTS.append(self)

    def send(self, value: dict[str, Any] | bytes, *, key: bytes | None = None, partition: int | None = None) -> None:
        """Send one event: keyed by user id on the murmur2 partition (Java default) unless told otherwise."""
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        if key is None and isinstance(value, dict):
            key = str(value["user_id"]).encode()
        if partition is None:
            partition = partition_for(key.decode(), self.partitions) if key else 0
        self._producer.send(self.topic, key=key, value=raw, partition=partition)

    def send_wrong_partition(self, value: dict[str, Any]) -> int:
        """Send as a librdkafka/Sarama client whose partitioner disagrees with murmur2 would."""
        right = partition_for(str(value["user_id"]), self.partitions)
        wrong = (right + 1) % self.partitions
        self.send(value, partition=wrong)
        return wrong

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


@dataclass
class TopicReader:
    """Reads a whole topic from the beginning, incrementally."""

    bootstrap: str
    topic: str
    records: list[Any] = field(default_factory=list)
    _consumer: KafkaConsumer = field(init=False)

    def __post_init__(self) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
            consumer_timeout_ms=200,
        )  # fmt: skip
        parts = self._consumer.partitions_for_topic(self.topic) or set()
        deadline = time.monotonic() + 10
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = self._consumer.partitions_for_topic(self.topic) or set()
        self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(parts)])
        OPEN_CLIENTS.append(self)

    def poll(self) -> list[Any]:
        batch = self._consumer.poll(timeout_ms=300)
        for _, msgs in sorted(batch.items(), key=lambda kv: kv[0].partition):
            self.records.extend(msgs)
        return self.records

    def close(self) -> None:
        self._consumer.close()


class ProfileLog:
    """Every record of the profiles topic, per user, in log order (None = tombstone)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.reader = TopicReader(bootstrap, topic)
        self.by_user: dict[str, list[Profile | None]] = {}
        self._seen = 0

    def poll(self) -> dict[str, list[Profile | None]]:
        records = self.reader.poll()
        for rec in records[self._seen :]:
            user = rec.key.decode()
            self.by_user.setdefault(user, []).append(None if rec.value is None else decode_profile(rec.value))
        self._seen = len(records)
        return self.by_user

    def last(self, user: str) -> Profile | None:
        history = self.by_user.get(user) or [None]
        return history[-1]


def dead_letters(reader: TopicReader) -> list[dict[str, Any]]:
    out = []
    for rec in reader.poll():
        headers = parse_dead_letter_headers(rec.headers)
        out.append({"key": rec.key, "value": rec.value, **headers})
    return out


class Worker:
    """One `prefstream worker` process."""

    def __init__(self, env: dict[str, str], name: str, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.data_dir = workdir / f"worker-{name}"
        self.log_path = workdir / f"worker-{name}.log"
        self.env = {**os.environ, **env, "PREFSTREAM_WEB_PORT": str(self.port),
                    "PREFSTREAM_DATA_DIR": str(self.data_dir), "PYTHONPATH": str(ROOT)}  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefstream.cli", "worker"], env=self.env, cwd=ROOT, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample of /metrics (0 when absent)."""
        _, body = self.get("/metrics")
        want = f"{name}{{{labels}}}" if labels else name
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            if sample == want:
                total += float(value)
        return total

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        def ready() -> bool:
            assert self.alive(), f"worker {self.name} exited:\n{self.tail()}"
            try:
                return self.get("/readyz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout, f"worker {self.name} ready", lambda: self.tail())

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_lines(self, event_name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if event_name in line and line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, state: Callable[[], object] = lambda: "") -> None:
    """Poll `predicate` until true; fail after `timeout` s naming `what` and showing `state()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    if predicate():
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; state:\n{state()}")


def trace_user(env: dict[str, str], user: str, partitions: int) -> str:
    """Where each of a user's events went, for a failed exactly-once check: the events on the user's partition
    (offset, event id, whether the stored dedupe memory has it), the group's committed offset there, and the
    user's history in the state changelog (offset: epoch, version, pending event ids)."""
    import msgspec

    from prefstream.streams import state as st
    from prefstream.streams.store import UserRecord, user_key

    bootstrap, app_id = env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_APP_ID"]
    part = partition_for(user, partitions)
    key = user_key(user)

    def records(topic: str) -> list[Any]:
        reader = TopicReader(bootstrap, topic)
        try:
            out: list[Any] = []
            while True:
                got = len(out)
                out = [r for r in reader.poll() if r.partition == part]
                if len(out) == got:
                    return out
        finally:
            reader.close()
            OPEN_CLIENTS.remove(reader)

    events = []
    for r in records(env["PREFSTREAM_EVENTS_TOPIC"]):
        try:
            ev = json.loads(r.value)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("user_id") == user:
            events.append((r.offset, str(ev.get("event_id"))))
    decode = msgspec.msgpack.Decoder(UserRecord).decode
    users = [(r.offset, decode(r.value) if r.value else UserRecord()) for r in records(f"{app_id}-state-changelog")
             if r.key == key]  # fmt: skip
    metas = [(o, u.meta) for o, u in users]
    pendings = [(o, u.pending) for o, u in users]
    group = KafkaConsumer(bootstrap_servers=bootstrap, group_id=app_id, enable_auto_commit=False)
    try:
        committed = group.committed(TopicPartition(env["PREFSTREAM_EVENTS_TOPIC"], part))
    finally:
        group.close()
    last_meta = metas[-1][1] if metas else st.Meta()
    lines = [f"{user}: partition {part}, committed events offset {committed}"]
    lines += [f"  event @{o} {eid} seen={st.has_seen(last_meta, st.seen_key(user, eid))}" for o, eid in events]
    lines += [f"  meta @{o} epoch={m.epoch} version={m.version} seen_ids={len(m.seen) // st.SEEN_SIZE}" for o, m in metas]
    lines += [f"  pending @{o} {[e.event_id for e in p.events] if p else None}" for o, p in pendings]
    return "\n".join(lines)
