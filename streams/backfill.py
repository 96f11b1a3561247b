"""`prefstream backfill FILE.jsonl | --from-topic TOPIC`: start profiles from a team's past interactions.

The history goes through the stream, not beside it: this tool validates the events, groups them by user
key (`schemas.keys`), and writes each user's history, in event-time order, as `BackfillChunk` records on
`{app_id}-backfill`, on the user's partition (co-partitioned with the events topic). The worker consumes
that topic with the same agent, state and dedupe as live events (`streams.backfill_ingest`):

- a history is folded in as few updates as the prompt token budget allows (batches of up to
  `PREFSTREAM_BACKFILL_MAX_EVENTS`; a partial batch waits while the user's chunks are still arriving);
- each update reads its evidence in event-time order, so a history goes before live events that happened
  after it, and an event both in the history and live (same event_id) is applied once;
- backfill-only updates run at `PREFSTREAM_BACKFILL_PRIORITY` in the engine and after due live users in
  the scheduler, so live traffic keeps its latency.

1. read the source: a JSONL file (one event per line), or a topic from its beginning to its end at start;
   invalid lines and `forget` events are skipped and counted (a forget goes through the live path);
2. order users by key and each user's events by (`ts`, source order); pack them into chunks of at most
   `--chunk-bytes` (one event at least), the last one `final`;
3. resume: the state file (`--state`, default `FILE.backfill-state.json`) records how many users are
   fully sent for this source (identified by a digest of the events); a rerun skips them. A user whose
   chunks were only partly sent is sent again whole: the worker drops what it already has;
4. rate limit (`--rate` events/s) and a progress bar (tqdm, on stderr).

Exit codes: 0 done; 2 a problem you can fix (file missing, state of another source, broker unreachable).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prefstream.errors import PrefstreamError
from prefstream.settings import Settings

__all__ = ["BackfillError", "History", "add_arguments", "chunks", "read_history", "run", "send"]

#: A chunk's events add up to about this many bytes (the broker's default message limit is 1 MiB).
DEFAULT_CHUNK_BYTES = 512 * 1024


class BackfillError(PrefstreamError):
    """A backfill cannot start or go on (the message says what to do)."""


@dataclass
class History:
    """Validated events of a source, by user key, each user's in (ts, source order)."""

    users: dict[str, list[tuple[int, int, bytes]]] = field(default_factory=dict)  # key -> (ts_ms, seq, value)
    invalid: int = 0
    forgets: int = 0
    first_invalid: list[int] = field(default_factory=list)  # line numbers (or source positions), a few

    @property
    def events(self) -> int:
        return sum(len(v) for v in self.users.values())

    def ordered(self) -> list[tuple[str, list[bytes]]]:
        """Users by key; each user's event values by (ts, source order)."""
        return [(k, [v for _, _, v in sorted(self.users[k])]) for k in sorted(self.users)]

    def digest(self) -> str:
        """Identifies the source's content: a state file of another source is refused."""
        h = hashlib.sha256()
        for key, values in self.ordered():
            h.update(key.encode() + b"\x00")
            for v in values:
                h.update(hashlib.sha256(v).digest())
        return h.hexdigest()


def read_history(values: Iterable[bytes], settings: Settings) -> History:
    """Validate and group the events (1.)."""
    from prefstream.schemas.decode import decode_event
    from prefstream.schemas.errors import EventRejected
    from prefstream.schemas.events import ForgetEvent
    from prefstream.schemas.keys import user_key
    from prefstream.schemas.timefmt import ts_to_ms

    history = History()
    for seq, raw in enumerate(values, start=1):
        value = raw.strip()
        if not value:
            continue
        try:
            event = decode_event(None, value, settings.limits)
        except EventRejected:
            history.invalid += 1
            if len(history.first_invalid) < 10:
                history.first_invalid.append(seq)
            continue
        if isinstance(event, ForgetEvent):
            history.forgets += 1
            continue
        key = user_key(event.tenant, event.user_id)
        history.users.setdefault(key, []).append((ts_to_ms(event.ts), seq, value))
    return history


def chunks(values: list[bytes], max_bytes: int) -> Iterator[tuple[list[bytes], bool]]:
    """Pack one user's events into chunks of about `max_bytes` (at least one event each); the last is final."""
    batch: list[bytes] = []
    size = 0
    for i, v in enumerate(values):
        if batch and size + len(v) > max_bytes:
            yield batch, False
            batch, size = [], 0
        batch.append(v)
        size += len(v)
        if i == len(values) - 1:
            yield batch, True


@dataclass
class RateLimit:
    """At most `rate` events per second on average (0: unlimited), with one second of burst."""

    rate: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _level: float | None = None
    _at: float = 0.0

    def wait(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        level = self.rate if self._level is None else min(self.rate, self._level + (now - self._at) * self.rate)
        if level < n:
            self.sleep((n - level) / self.rate)
            now = self.clock()
            level = n
        self._level, self._at = level - n, now


@dataclass
class State:
    """The resume point: users fully sent for the source with this digest."""

    path: Path
    digest: str
    users_done: int = 0

    @classmethod
    def load(cls, path: Path, digest: str, *, restart: bool) -> State:
        if restart or not path.exists():
            return cls(path, digest)
        try:
            doc = json.loads(path.read_text())
            users_done = int(doc["users_done"])
            stored = str(doc["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            raise BackfillError(f"cannot read the state file {path}: delete it, or pass --restart") from None
        if stored != digest:
            raise BackfillError(
                f"the state file {path} belongs to another source (its events differ): pass --restart to send "
                "everything again (the worker drops events it already has), or --state for another file"
            )
        return cls(path, digest, users_done)

    def save(self, users_done: int) -> None:
        self.users_done = users_done
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"digest": self.digest, "users_done": users_done}))
        os.replace(tmp, self.path)  # atomic: a crash leaves the old or the new point, never half of one


@dataclass
class Report:
    users: int
    users_skipped: int
    events: int
    chunks: int
    seconds: float


def send(history: History, settings: Settings, state: State, *, rate: float, chunk_bytes: int,
         progress: bool = True) -> Report:  # fmt: skip
    """Write the history to `{app_id}-backfill` from the resume point on (2.-4.)."""
    from kafka import KafkaProducer
    from tqdm import tqdm

    from prefstream.kafka.security import client_errors, kafka_python_kwargs
    from prefstream.streams.partitioning import partition_for
    from prefstream.streams.records import BackfillChunk, encode
    from prefstream.streams.topology import internal_topics

    topic = internal_topics(settings)["backfill"]
    partitions = settings.topics.partitions
    users = history.ordered()
    start = min(state.users_done, len(users))
    limiter = RateLimit(rate)
    started = time.monotonic()
    sent_chunks = 0
    remaining = sum(len(v) for _, v in users[start:])
    with client_errors(settings.kafka):
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=20,
            max_request_size=4 * 1024 * 1024, **kafka_python_kwargs(settings.kafka),
        )  # fmt: skip
        bar = tqdm(total=remaining, unit="event", desc="backfill", disable=not progress, file=sys.stderr)
        try:
            for index in range(start, len(users)):
                key, values = users[index]
                partition = partition_for(key, partitions)
                for batch, final in chunks(values, chunk_bytes):
                    limiter.wait(len(batch))
                    record = BackfillChunk(key=key, events=tuple(batch), final=final)
                    producer.send(topic, key=key.encode(), value=encode(record), partition=partition)
                    sent_chunks += 1
                    bar.update(len(batch))
                # The resume point moves only over users the broker has confirmed (acks=all).
                producer.flush()
                state.save(index + 1)
        finally:
            bar.close()
            producer.close()
    return Report(users=len(users) - start, users_skipped=start, events=remaining, chunks=sent_chunks,
                  seconds=time.monotonic() - started)  # fmt: skip


def topic_values(settings: Settings, topic: str) -> list[bytes]:
    """Every value of `topic`, from the beginning to the end offsets seen at start."""
    from kafka import KafkaConsumer, TopicPartition

    from prefstream.kafka.security import client_errors, kafka_python_kwargs

    values: list[bytes] = []
    with client_errors(settings.kafka):
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None, enable_auto_commit=False,
            **kafka_python_kwargs(settings.kafka),
        )  # fmt: skip
        try:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise BackfillError(f"topic {topic} does not exist (or has no partitions): check --from-topic")
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                for records in consumer.poll(timeout_ms=1000).values():
                    values += [r.value for r in records if r.value is not None and r.offset < ends[r.topic_partition]]
        finally:
            consumer.close()
    return values


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("file", nargs="?", type=Path, help="a JSONL file of events (one event per line)")
    parser.add_argument("--from-topic", metavar="TOPIC", help="read the events of this topic instead of a file")
    parser.add_argument("--rate", type=float, default=0.0, help="most events per second sent (default: unlimited)")
    parser.add_argument("--state", type=Path, help="resume file (default: FILE.backfill-state.json, or "
                        "backfill-TOPIC-state.json in the current directory)")  # fmt: skip
    parser.add_argument("--restart", action="store_true", help="ignore the resume file and send everything")
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES,
                        help="event bytes per backfill record (default: 512 KiB)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    if (args.file is None) == (args.from_topic is None):
        raise BackfillError("name one source: a FILE.jsonl or --from-topic TOPIC")
    if args.rate < 0 or args.chunk_bytes < 1:
        raise BackfillError("--rate must be >= 0 and --chunk-bytes >= 1")
    if args.file is not None:
        if not args.file.is_file():
            raise BackfillError(f"{args.file} is not a file: pass a JSONL file of events")
        with args.file.open("rb") as f:
            history = read_history(f, settings)
        state_path = args.state or args.file.with_name(args.file.name + ".backfill-state.json")
    else:
        history = read_history(topic_values(settings, args.from_topic), settings)
        state_path = args.state or Path(f"backfill-{args.from_topic}-state.json")
    state = State.load(state_path, history.digest(), restart=args.restart)
    if state.users_done:
        print(f"backfill: resuming after {state.users_done} of {len(history.users)} users ({state_path})",
              file=sys.stderr)  # fmt: skip
    report = send(history, settings, state, rate=args.rate, chunk_bytes=args.chunk_bytes,
                  progress=not args.no_progress)  # fmt: skip
    skipped = f"; skipped {history.invalid} invalid line(s)" if history.invalid else ""
    if history.first_invalid:
        skipped += f" (first: {', '.join(map(str, history.first_invalid))})"
    if history.forgets:
        skipped += f"; skipped {history.forgets} forget event(s): send forgets to the events topic"
    print(f"backfill: sent {report.events} events of {report.users} users in {report.chunks} records in "
          f"{report.seconds:.1f} s ({report.users_skipped} users already sent){skipped}")  # fmt: skip
    return 0
