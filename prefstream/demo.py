"""`prefstream demo`: the whole pipeline end to end on one machine, no GPU and no model hub.

1. A Kafka broker: the one in `KAFKA_BOOTSTRAP_SERVERS` when set (with demo-only topic names, deleted
   afterwards), else a fresh local one in a temporary directory on a free port.
2. A worker process (`prefstream worker`) with the `extractive` baseline backend.
3. Sample events for three users, sent in waves, plus one malformed event.
4. Every profile record printed as it arrives, so the summaries can be seen evolving; the dead letter.
5. Everything it started is stopped, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from prefstream.errors import PrefstreamError
from prefstream.kafka import local
from prefstream.settings import Settings

USERS = ("alice", "bob", "chen")


def sample_waves() -> list[list[dict[str, object]]]:
    """Three waves of events: each user's interests become clearer (and, for bob, change) over time."""
    ts = "2026-11-25T12:{:02d}:00Z"
    books = [
        ("Title: The Pragmatic Programmer\nDescription: software craftsmanship", "Title: Cooking for One"),
        ("Title: Designing Data-Intensive Applications\nDescription: distributed systems", "Title: Celebrity Gossip"),
        ("Title: Kafka: The Definitive Guide\nDescription: event streaming", "Title: Knitting Basics"),
    ]
    news = [
        ("Title: Local team wins the cup\nAbstract: a last-minute goal", "Title: Markets slide"),
        ("Title: Transfer window opens\nAbstract: clubs spend big", "Title: New tax rules"),
        ("Title: Marathon record broken\nAbstract: a new world best", "Title: Opera season opens"),
    ]
    waves: list[list[dict[str, object]]] = [[], [], []]
    for w in range(3):
        chosen, rejected = books[w]
        waves[w].append({"event_id": f"a{w}1", "user_id": "alice", "ts": ts.format(w * 10), "kind": "engagement",
                         "domain": "books", "item": {"text": chosen}, "negatives": [rejected]})
        waves[w].append({"event_id": f"a{w}2", "user_id": "alice", "ts": ts.format(w * 10 + 1), "kind": "rating",
                         "domain": "books", "item": chosen, "score": 5, "scale": 5})
        clicked, skipped = news[w]
        waves[w].append({"event_id": f"b{w}1", "user_id": "bob", "ts": ts.format(w * 10 + 2), "kind": "impression",
                         "domain": "news", "shown": [skipped, clicked], "clicked": [1]})
        waves[w].append({"event_id": f"c{w}1", "user_id": "chen", "ts": ts.format(w * 10 + 3), "kind": "pair",
                         "query": "How do I get better at chess?",
                         "chosen": "Play longer games and review them with an engine afterwards.",
                         "rejected": "Just play a lot of bullet chess."})
        waves[w].append({"event_id": f"c{w}2", "user_id": "chen", "ts": ts.format(w * 10 + 4), "kind": "text",
                         "text": "Loved the endgame study; more concrete puzzles like that please."})
    return waves  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")


@contextlib.contextmanager
def _broker(settings: Settings, workdir: Path) -> Iterator[tuple[str, bool]]:
    """(bootstrap servers, external?)"""
    if "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
        yield settings.kafka.bootstrap_servers, True
        return
    print("demo: starting a local Kafka broker ...", flush=True)
    with local.running(workdir / "kafka") as cluster:
        print(f"demo: Kafka {local.KAFKA_VERSION} at {cluster.bootstrap_servers}", flush=True)
        yield cluster.bootstrap_servers, False


def _worker_env(bootstrap: str, external: bool, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        PREFSTREAM_MODEL_BACKEND="extractive",
        PREFSTREAM_DATA_DIR=str(workdir / "worker"),
        PREFSTREAM_WEB_PORT=str(local.free_port()),
        PREFSTREAM_PARTITIONS=env.get("PREFSTREAM_PARTITIONS", "4"),
        PREFSTREAM_LOG_FORMAT="json",
        # Small batches and short waits so the demo shows several versions within a minute.
        PREFSTREAM_FLUSH_MIN_EVENTS=env.get("PREFSTREAM_FLUSH_MIN_EVENTS", "2"),
        PREFSTREAM_FLUSH_MAX_WAIT_S=env.get("PREFSTREAM_FLUSH_MAX_WAIT_S", "3"),
        PREFSTREAM_FLUSH_IDLE_S=env.get("PREFSTREAM_FLUSH_IDLE_S", "1"),
        PREFSTREAM_FLUSH_MIN_INTERVAL_S=env.get("PREFSTREAM_FLUSH_MIN_INTERVAL_S", "1"),
        PREFSTREAM_SESSION_TIMEOUT_S=env.get("PREFSTREAM_SESSION_TIMEOUT_S", "10"),
    )
    if not external:  # the demo's own broker is PLAINTEXT on loopback, whatever security is set for others
        for name in [k for k in env if k.startswith(("PREFSTREAM_KAFKA_SASL_", "PREFSTREAM_KAFKA_SSL_"))]:
            del env[name]
        env["PREFSTREAM_KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
    if external:  # never touch a shared cluster's real topics
        run = f"demo-{uuid.uuid4().hex[:8]}"
        env.update(
            PREFSTREAM_APP_ID=run,
            PREFSTREAM_EVENTS_TOPIC=f"{run}.events",
            PREFSTREAM_PROFILES_TOPIC=f"{run}.profiles",
            PREFSTREAM_DLQ_TOPIC=f"{run}.dlq",
            PREFSTREAM_FAILURES_TOPIC=f"{run}.failures",
            PREFSTREAM_UPDATES_TOPIC=f"{run}.updates",
        )
    return env


def _wait_ready(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PrefstreamError(f"the worker exited with {proc.returncode} during start-up")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.5)
    raise PrefstreamError("the worker did not become ready in time")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, KafkaProducer

    from prefstream.kafka.security import client_errors
    from prefstream.topics import ensure_topics

    with tempfile.TemporaryDirectory(prefix="prefstream-demo-") as tmp:
        workdir = Path(tmp)
        with _broker(args.settings, workdir) as (bootstrap, external):
            env = _worker_env(bootstrap, external, workdir)
            settings = Settings.from_env(env)
            ensure_topics(settings)
            log_path = workdir / "worker.log"
            print(f"demo: starting a worker (extractive backend); its log: {log_path}", flush=True)
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "prefstream.cli", "worker"], env=env, stdout=log_file,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            try:
                deadline = time.monotonic() + args.timeout
                _wait_ready(settings.worker.web_port, proc, deadline)
                with client_errors(settings.kafka):
                    ok = _drive(settings, KafkaProducer, KafkaConsumer, deadline, proc)
                if ok:
                    _read_api(settings.worker.web_port)
            finally:
                _stop(proc)
                if external:
                    _delete_topics(settings)
            if not ok:
                print("demo: worker log tail:\n" + "\n".join(log_path.read_text().splitlines()[-30:]))
                return 1
    print("demo: done; everything it started has been stopped", flush=True)
    return 0


def _drive(settings: Settings, producer_cls: type, consumer_cls: type, deadline: float,
           proc: subprocess.Popen[bytes]) -> bool:  # fmt: skip
    from prefstream.kafka.security import kafka_python_kwargs

    t = settings.topics
    security = kafka_python_kwargs(settings.kafka)
    producer = producer_cls(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", **security)
    consumer = consumer_cls(
        t.profiles, t.dlq, bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=500, **security,
    )  # fmt: skip
    sent: dict[str, int] = dict.fromkeys(USERS, 0)
    applied: dict[str, int] = dict.fromkeys(USERS, 0)
    try:
        # One malformed event (no user_id): it goes to the dead-letter topic with its reason.
        producer.send(t.events, key=b"mallory", value=b'{"event_id": "x1", "kind": "pair"}')
        for number, wave in enumerate(sample_waves(), start=1):
            print(f"\ndemo: wave {number}: sending {len(wave)} events", flush=True)
            for event in wave:
                producer.send(t.events, key=str(event["user_id"]).encode(), value=json.dumps(event).encode())
                sent[str(event["user_id"])] += 1
            producer.flush()
            while any(applied[u] < sent[u] for u in USERS):
                if time.monotonic() > deadline or proc.poll() is not None:
                    print(f"demo: gave up waiting (applied {applied}, sent {sent})", flush=True)
                    return False
                for message in consumer:
                    _show(message, t.dlq, applied)
        return True
    finally:
        producer.close()
        consumer.close()


def _show(message: object, dlq_topic: str, applied: dict[str, int]) -> None:
    if message.topic == dlq_topic:  # type: ignore[attr-defined]
        headers = {k: v.decode(errors="replace") for k, v in message.headers}  # type: ignore[attr-defined]
        code = next((v for k, v in headers.items() if k.endswith("code")), "?")
        print(f"dead letter: key={message.key!r} code={code}", flush=True)  # type: ignore[attr-defined]
        return
    if message.value is None:  # type: ignore[attr-defined]
        print(f"profile {message.key.decode()}: forgotten (tombstone)", flush=True)  # type: ignore[attr-defined]
        return
    profile = json.loads(message.value)  # type: ignore[attr-defined]
    user = profile["user_id"]
    applied[user] = max(applied.get(user, 0), profile["events_applied"])
    print(
        f"profile {user} epoch={profile['epoch']} version={profile['version']} "
        f"events_applied={profile['events_applied']}\n    " + profile["summary"].replace("\n", "\n    "),
        flush=True,
    )


def _read_api(port: int) -> None:
    """Show that any worker answers reads: the same profile over HTTP."""
    url = f"http://127.0.0.1:{port}/profiles/alice"
    with urllib.request.urlopen(url, timeout=10) as resp:
        profile = json.loads(resp.read())
    print(f"\nread API: GET {url} -> version={profile['version']} events_applied={profile['events_applied']}")


def _delete_topics(settings: Settings) -> None:
    """Remove what the demo created on a shared broker: its topics, the app's internal topics, its group."""
    from prefstream.topics import admin_client, required_topics

    app = settings.worker.app_id
    with admin_client(settings.kafka) as admin:
        internal = [t for t in admin.list_topics() if t.startswith(f"{app}-")]  # type: ignore[attr-defined]
        admin.delete_topics([s.name for s in required_topics(settings)] + internal, raise_errors=False)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            admin.delete_groups([app])  # type: ignore[attr-defined]
