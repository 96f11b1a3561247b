"""`prefstream demo`: the whole pipeline end to end on one machine, no GPU and no model hub.

1. A Kafka broker: the one in `KAFKA_BOOTSTRAP_SERVERS` when set (with demo-only topic names, deleted
   afterwards), else a fresh local one in a temporary directory on a free port.
2. A worker process (`prefstream worker`) with the `extractive` baseline backend, or (`--backend vllm`)
   the in-process vLLM engine on the tiny local model.
3. Three waves of distinct events for three users, plus one malformed event: alice and chen keep their
   interests, bob's move from football to cooking.
4. After each wave, every new profile with the events it folded in, so the summaries can be seen
   evolving and why; the dead letter; failed updates; the read API's view of each user.
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
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefstream.errors import PrefstreamError
from prefstream.kafka import local
from prefstream.settings import Settings

USERS = ("alice", "bob", "chen")

# What each wave shows; bob is the user whose interests change.
WAVE_NOTES = (
    "first evidence: alice buys systems books, bob follows the live football scores, chen studies chess",
    "bob starts skipping the scores for the recipe of the day; alice and chen keep to their interests",
    "bob has switched: recipes first, the scores rejected; alice's and chen's profiles only sharpen",
)


def _news(title: str, abstract: str) -> dict[str, str]:
    return {"text": f"Title: {title}\nAbstract: {abstract}"}


def sample_waves() -> list[list[dict[str, object]]]:
    """Three waves of distinct events. alice and chen are consistent (their profiles sharpen); bob drifts
    from football to cooking: the recurring "Live scores" and "Recipe of the day" items (a news feed's
    standing sections) let a frequency-ranked profile show the switch."""
    scores = ("Live scores", "Premier League, minute by minute", "Cup quarter-finals live", "Derby day, live")
    recipe = ("Recipe of the day", "One-pan lemon pasta", "Sheet-pan chicken with greens", "Ten-minute miso soup")

    def ts(wave: int, minute: int) -> str:
        return f"2026-11-25T12:{wave * 10 + minute:02d}:00Z"

    def event(eid: str, user: str, wave: int, minute: int, kind: str, **fields: object) -> dict[str, object]:
        return {"event_id": eid, "user_id": user, "ts": ts(wave, minute), "kind": kind, **fields}

    return [
        [
            event("a-101", "alice", 0, 0, "engagement", domain="books", meta={"action": "purchase"},
                  item={"text": "Title: Designing Data-Intensive Applications\nDescription: distributed systems"},
                  negatives=["Title: Celebrity Gossip Annual"]),
            event("a-102", "alice", 0, 1, "rating", domain="books", score=5, scale=5,
                  item="Title: The Pragmatic Programmer\nDescription: software craftsmanship"),
            event("b-101", "bob", 0, 2, "impression", domain="news", clicked=[0],
                  shown=[_news(scores[0], scores[1]), _news(recipe[0], recipe[1]), _news("Markets slide", "stocks fall")]),
            event("b-102", "bob", 0, 3, "impression", domain="news", clicked=[1],
                  shown=[_news("Weather", "rain all week"), _news(scores[0], scores[2])]),
            event("c-101", "chen", 0, 4, "pair", query="How do I get better at chess?",
                  chosen="Play longer games and review them with an engine afterwards.",
                  rejected="Just play a lot of bullet chess."),
        ],
        [
            event("a-201", "alice", 1, 0, "engagement", domain="books", meta={"action": "purchase"},
                  item={"text": "Title: Kafka: The Definitive Guide\nDescription: event streaming"},
                  negatives=["Title: Knitting Basics"]),
            event("b-201", "bob", 1, 2, "impression", domain="news", clicked=[1],
                  shown=[_news(scores[0], scores[3]), _news(recipe[0], recipe[2])]),
            event("b-202", "bob", 1, 3, "text", context="Comment on: Recipe of the day",
                  text="Made the sheet-pan chicken tonight; more quick dinners like this please."),
            event("c-201", "chen", 1, 4, "text", context="Review the book Silman's Complete Endgame Course",
                  text="Loved the endgame studies; concrete positions beat abstract rules."),
        ],
        [
            event("a-301", "alice", 2, 0, "pair", query="What should I read next?",
                  chosen="Database Internals: how storage engines and replication work.",
                  rejected="A celebrity memoir."),
            event("b-301", "bob", 2, 2, "impression", domain="news", clicked=[0],
                  shown=[_news(recipe[0], recipe[3]), _news(scores[0], scores[1]), _news("Transfer rumours", "a striker on the move")]),
            event("b-302", "bob", 2, 3, "engagement", domain="news", meta={"action": "save"},
                  item={"text": f"Title: {recipe[0]}\nAbstract: {recipe[3]}"},
                  negatives=[f"Title: {scores[0]}\nAbstract: {scores[2]}"]),
            event("c-301", "chen", 2, 4, "conversation", turns=[
                {"role": "user", "content": "Which opening should I learn first?"},
                {"role": "assistant", "content": "The Italian Game: classical development."},
                {"role": "user", "content": "Good, I prefer quiet positional openings to sharp gambits."},
            ]),
        ],
    ]  # fmt: skip


def describe(event: dict[str, object]) -> str:
    """One line of what an event says about the user (for the demo's output; the worker sees the JSON)."""

    def label(item: object) -> str:
        text = item["text"] if isinstance(item, dict) else str(item)
        return text.splitlines()[0].removeprefix("Title: ")

    kind = event["kind"]
    if kind == "engagement":
        negatives = event.get("negatives") or []
        action = {"purchase": "bought", "save": "saved"}.get((event.get("meta") or {}).get("action", ""), "engaged with")  # type: ignore[union-attr]
        rest = f" (not {', '.join(label(n) for n in negatives)})" if negatives else ""  # type: ignore[union-attr]
        return f"{action}: {label(event['item'])}{rest}"
    if kind == "rating":
        return f"rated {label(event['item'])} {event['score']}/{event['scale']}"
    if kind == "impression":
        shown = [label(i) for i in event["shown"]]  # type: ignore[union-attr]
        clicked = [shown[i] for i in event.get("clicked", [])]  # type: ignore[union-attr]
        skipped = [s for i, s in enumerate(shown) if i not in set(event.get("clicked", []))]  # type: ignore[arg-type]
        return f"clicked {', '.join(clicked) or 'nothing'}; skipped {', '.join(skipped)}"
    if kind == "pair":
        return f"asked {event['query']!r}: preferred {event['chosen']!r} over {event['rejected']!r}"
    if kind == "text":
        return f"wrote: {event['text']!r}"
    if kind == "conversation":
        said = [t["content"] for t in event["turns"] if t["role"] == "user"]  # type: ignore[union-attr,index]
        return f"said: {' / '.join(repr(s) for s in said)}"
    return str(kind)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up after this many seconds (default 300; 900 with --backend vllm)")  # fmt: skip
    parser.add_argument(
        "--backend", choices=("extractive", "vllm"), default=os.environ.get("PREFSTREAM_DEMO_BACKEND", "extractive"),
        help="extractive (default): the readable baseline; vllm: the in-process vLLM engine with the tiny local "
        "model and random weights (the real engine path; its text is gibberish, so updates fail to parse and "
        "users park). Env: PREFSTREAM_DEMO_BACKEND",
    )  # fmt: skip


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


def vllm_env(model_dir: Path) -> dict[str, str]:
    """The settings that run the `vllm` backend on a CPU with the tiny model (README: "The real model path on
    a CPU"). Random weights: the engine path is real, the text is not."""
    return {
        "PREFSTREAM_MODEL_BACKEND": "vllm",
        "PREFSTREAM_MODEL": str(model_dir),
        "PREFSTREAM_VLLM_LOAD_FORMAT": "dummy",  # the tiny model has no weights
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),  # GiB, not most of RAM
        "PREFSTREAM_VLLM_MAX_MODEL_LEN": "4096",
        "PREFSTREAM_PROMPT_TOKEN_BUDGET": "3072",
        "PREFSTREAM_MAX_TOKENS": "64",
        "PREFSTREAM_VLLM_MAX_NUM_SEQS": "8",
        "PREFSTREAM_VLLM_DTYPE": "bfloat16",
        "PREFSTREAM_VLLM_ENFORCE_EAGER": "true",  # no compilation: starts in seconds, not minutes
        # Gibberish fails to parse: retry and park quickly instead of backing off for minutes.
        "PREFSTREAM_RETRY_LIMIT": "1",
        "PREFSTREAM_DEGRADED_ATTEMPTS": "0",
        "PREFSTREAM_RETRY_BACKOFF_S": "0.5",
    }


def _worker_env(bootstrap: str, external: bool, workdir: Path, backend: str = "extractive") -> dict[str, str]:
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
    if backend == "vllm":
        from prefstream.models.tiny import ensure_tiny_model

        env.update(vllm_env(ensure_tiny_model()))
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
            env = _worker_env(bootstrap, external, workdir, args.backend)
            settings = Settings.from_env(env)
            ensure_topics(settings)
            log_path = workdir / "worker.log"
            print(f"demo: starting a worker ({args.backend} backend); its log: {log_path}", flush=True)
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "prefstream.cli", "worker"], env=env, stdout=log_file,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            try:
                deadline = time.monotonic() + (args.timeout or (900.0 if args.backend == "vllm" else 300.0))
                _wait_ready(settings.worker.web_port, proc, deadline)
                with client_errors(settings.kafka):
                    ok = _drive(settings, KafkaProducer, KafkaConsumer, deadline, proc)
                if ok:
                    _read_api(settings.worker.web_port)
                    if args.backend == "vllm":
                        print("\ndemo: the tiny model has random weights, so its generations do not parse (the reasons "
                              "above) and the users were parked with their events kept (`prefstream parked`, "
                              "`prefstream redrive`). The engine path is the real one: with AlignXplore+ weights "
                              "(PREFSTREAM_MODEL=<its directory>, no dummy load format) the same run writes summaries.",
                              flush=True)  # fmt: skip
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
    """Send the waves; after each, wait until every user's events are folded (or the user is parked) and
    print each new profile with the events that moved it."""
    from prefstream.kafka.security import kafka_python_kwargs

    t = settings.topics
    security = kafka_python_kwargs(settings.kafka)
    producer = producer_cls(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", **security)
    consumer = consumer_cls(
        t.profiles, t.dlq, t.failures, bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=500, **security,
    )  # fmt: skip
    story = Story()
    try:
        # One malformed event (no user_id): it goes to the dead-letter topic with its reason.
        producer.send(t.events, key=b"mallory", value=b'{"event_id": "x1", "kind": "pair"}')
        for number, wave in enumerate(sample_waves(), start=1):
            print(f"\n=== wave {number}: {WAVE_NOTES[number - 1]} ({len(wave)} events)", flush=True)
            for event in wave:
                producer.send(t.events, key=str(event["user_id"]).encode(), value=json.dumps(event).encode())
                story.sent(event)
            producer.flush()
            while not story.settled(lambda u: _parked(settings.worker.web_port, u)):
                if time.monotonic() > deadline or proc.poll() is not None:
                    print(f"demo: gave up waiting ({story.progress()})", flush=True)
                    return False
                for message in consumer:
                    story.show(message, t)
        return True
    finally:
        producer.close()
        consumer.close()


class Story:
    """Which events each user was sent, in order, and how many the latest profile has folded in."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, object]]] = {u: [] for u in USERS}
        self.applied: dict[str, int] = dict.fromkeys(USERS, 0)
        self.summaries: dict[str, str] = {}

    def sent(self, event: dict[str, object]) -> None:
        self.events[str(event["user_id"])].append(event)

    def settled(self, parked: Callable[[str], bool]) -> bool:
        waiting = [u for u in USERS if self.applied[u] < len(self.events[u])]
        return all(parked(u) for u in waiting)

    def progress(self) -> str:
        return ", ".join(f"{u}: {self.applied[u]} of {len(self.events[u])} events folded" for u in USERS)

    def show(self, message: Any, topics: Any) -> None:
        if message.topic == topics.dlq:
            headers = {k: v.decode(errors="replace") for k, v in message.headers}
            code = next((v for k, v in headers.items() if k.endswith("code")), "?")
            print(f"dead letter: key={message.key!r} code={code}", flush=True)
        elif message.topic == topics.failures:
            f = json.loads(message.value)
            print(f"failed update of {f['user_id']}: {f['reason']} (attempt {f['attempts']}, {f['event_count']} "
                  f"events; model {f['model']}, prompt {f['prompt_version']})", flush=True)  # fmt: skip
        elif message.value is None:
            print(f"profile {message.key.decode()}: forgotten (tombstone)", flush=True)
        else:
            self._profile(json.loads(message.value))

    def _profile(self, profile: dict[str, Any]) -> None:
        user = profile["user_id"]
        before = self.applied.get(user, 0)
        folded = self.events.get(user, [])[before : profile["events_applied"]]
        self.applied[user] = max(before, profile["events_applied"])
        if not folded:
            return  # a republished version (after a rebalance): nothing new
        print(f"\n{user}: profile version {profile['version']}, folding {len(folded)} new event(s):", flush=True)
        for event in folded:
            print(f"  + {describe(event)}", flush=True)
        print("  summary now:\n    " + profile["summary"].replace("\n", "\n    "), flush=True)
        self.summaries[user] = profile["summary"]


def _parked(port: int, user_id: str) -> bool:
    """Whether the worker's read API says the user is parked (its updates stopped after failures)."""
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/users/{user_id}", timeout=5) as resp:
            return bool(json.loads(resp.read())["parked"])
    return False


def _read_api(port: int) -> None:
    """Show that any worker answers reads: each user's state over HTTP, and a profile."""
    print("\nread API:", flush=True)
    for user in USERS:
        url = f"http://127.0.0.1:{port}/users/{user}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            state = json.loads(resp.read())
        print(f"  GET {url} -> version={state['version']} pending_events={state['pending_events']} "
              f"parked={str(state['parked']).lower()}", flush=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/profiles/alice"
    with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(url, timeout=10) as resp:
        profile = json.loads(resp.read())
        print(f"  GET {url} -> version={profile['version']} events_applied={profile['events_applied']}", flush=True)


def _delete_topics(settings: Settings) -> None:
    """Remove what the demo created on a shared broker: its topics, the app's internal topics, its group."""
    from prefstream.topics import admin_client, required_topics

    app = settings.worker.app_id
    with admin_client(settings.kafka) as admin:
        internal = [t for t in admin.list_topics() if t.startswith(f"{app}-")]  # type: ignore[attr-defined]
        admin.delete_topics([s.name for s in required_topics(settings)] + internal, raise_errors=False)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            admin.delete_groups([app])  # type: ignore[attr-defined]
