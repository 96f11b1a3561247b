"""Hostile input on the events topic (reliability issue, item 4): one real worker, a seeded corpus of bad
messages of every class interleaved on every partition with valid events, and the worker neither stops nor
loses nor double-applies anything.

What counts as bad input is what `schemas.decode.decode_event` rejects; each case's expected reason code is
computed from it here, so the test pins that the worker dead-letters with exactly the decoder's verdict.
The choices for the edge cases (documented in `schemas/decode.py` and docs/schemas.md):

- a null value (tombstone) on the events topic is bad input: `missing_value`;
- an empty value, whitespace only, a UTF-8 byte order mark, `NaN`/`Infinity`, a lone surrogate escape
  (`"\\ud800"`) are not JSON: `invalid_json`; invalid UTF-8 bytes: `invalid_utf8`;
- `null`, a number, a string or an array at top level: `wrong_type`;
- nesting deeper than 64 levels anywhere (10,000-level arrays, or 65 levels in an unknown field):
  `too_deep`, decided on the raw bytes (it used to escape `decode_event` as RecursionError, which stopped the
  worker); 64 levels in an unknown field is valid;
- numbers: `1e400` or an integer past int64 in a known field is `out_of_range` (`invalid_ts` in `ts`); in an
  unknown field it is ignored, like any unknown value, so such an event is valid;
- repeated member names: the last wins (as json.loads and so the JSON Schema side read them), so an event
  with `user_id` twice is valid and belongs to the last one; `kind` repeated with another value is rejected
  (`{"kind":"pair","kind":"click"}`: `unknown_kind`; `{"kind":"pair","kind":"text"}`: `invalid_value`);
- text just at its bound (8,000 code points, 4-byte ones included) and a value of exactly
  PREFSTREAM_MAX_EVENT_BYTES are valid; one more character is `too_long`, one more byte `too_large`;
- a `ts` string whose offset puts it past 9999-12-31 or before 0001-01-01 in UTC is `invalid_ts` (the worker
  used to accept it and then crash writing the profile's `last_event_ts`); the extremes themselves are valid;
- the message key is not part of validity: a valid event with a null key, a key that is not its user id, or
  a key that is not even UTF-8 is repartitioned to its user's partition and applied; a bad message is
  dead-lettered with its key, whatever the key.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pytest

from prefstream.settings import LimitSettings
from prefstream.schemas.deadletter import parse_dead_letter_headers
from prefstream.schemas.decode import MAX_NESTING_DEPTH, decode_event
from prefstream.schemas.errors import EventRejected
from prefstream.streams.partitioning import partition_for
from prefstream.schemas.timefmt import ts_to_ms
from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, TopicReader, Worker, wait_for
from tests.streams.scenario import Scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SEED = 20260401
PARTITIONS = 3
USERS = [f"hx{i:02d}" for i in range(20)]
EVENTS_PER_USER = 10
SETTLE_TIMEOUT_S = 90.0
#: In every piece of user text, valid or not: no worker log line may contain it.
MARK = "PRIVATE-7f3a"
LIMITS = LimitSettings()
TS = 1_764_000_000_000
NEAR_BROKER_LIMIT = 1_048_000


@dataclass
class Sent:
    partition: int
    key: bytes | None
    value: bytes | None
    code: str | None  # the decoder's verdict: None for a valid event
    future: Any = None

    @property
    def offset(self) -> int:
        return int(self.future.get(timeout=30).offset)


class RecordingProducer(Producer):
    """The harness producer, sending raw keys and values to a chosen partition and keeping the futures."""

    def send_raw(self, partition: int, key: bytes | None, value: bytes | None) -> Any:
        return self._producer.send(self.topic, key=key, value=value, partition=partition)


def _verdict(value: bytes | None) -> str | None:
    try:
        decode_event(None, value, LIMITS)
    except EventRejected as e:
        return e.code.value
    return None


def _text(rng: random.Random, n: int = 12) -> str:
    alphabet = "abcdefghij éü中文😀\"\\\n\t<>{}[]"
    return MARK + " " + "".join(rng.choice(alphabet) for _ in range(n))


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


# --- valid events --------------------------------------------------------------------------------------


def _valid_doc(rng: random.Random, user: str, event_id: str, i: int) -> dict[str, Any]:
    base: dict[str, Any] = {"event_id": event_id, "user_id": user, "ts": TS + i}
    kind = ["pair", "impression", "engagement", "rating", "text", "conversation"][i % 6]
    if kind == "pair":
        return base | {"kind": kind, "chosen": _text(rng), "rejected": {"text": _text(rng), "item_id": "r1"},
                       "query": _text(rng), "domain": "board games"}  # fmt: skip
    if kind == "impression":
        shown = [_text(rng) for _ in range(rng.randint(1, 5))]
        return base | {"kind": kind, "shown": shown, "clicked": rng.sample(range(len(shown)), rng.randint(0, len(shown)))}
    if kind == "engagement":
        return base | {"kind": kind, "item": {"text": _text(rng)}, "negatives": [_text(rng)], "meta": {"a": MARK}}
    if kind == "rating":
        return base | {"kind": kind, "item": _text(rng), "score": rng.choice([0, 2.5, 5]), "scale": 5}
    if kind == "text":
        return base | {"kind": kind, "text": _text(rng), "context": _text(rng), "source": "app"}
    turns = [{"role": rng.choice(["user", "assistant", "system"]), "content": _text(rng)} for _ in range(3)]
    return base | {"kind": kind, "turns": turns}


def _edge_valid(rng: random.Random, user: str, event_id: str) -> list[bytes]:
    """Valid events at the edges: each must be applied like any other (one per entry, all with `event_id`s
    derived from the given one)."""
    e = lambda n: f"{event_id}-{n}"  # noqa: E731
    text = {"user_id": user, "ts": TS, "kind": "text"}
    out = [
        _dumps(text | {"event_id": e(1), "text": "😀" * (LIMITS.max_text_chars - len(MARK)) + MARK}),  # at the bound
        _dumps(text | {"event_id": e(2), "text": MARK, "x": [[[[]]]], "big": 10**40, "huge": 1e300}).replace(
            b"1e+300", b"1e400"),  # out-of-range numbers in unknown fields are ignored
        _dumps(text | {"event_id": e(3), "text": MARK, "x": json.loads("[" * (MAX_NESTING_DEPTH - 1) + "]" * (MAX_NESTING_DEPTH - 1))}),
        # repeated names: the last wins (user_id), a repeated kind with the same value is fine
        b'{"kind":"text","kind":"text","user_id":"someone-else","event_id":"' + e(4).encode() + b'","ts":1,'
        b'"text":"' + MARK.encode() + b' \\u0000 nul","user_id":"' + user.encode() + b'"}',
        _dumps(text | {"event_id": e(5), "text": MARK, "ts": "9999-12-31T23:59:59.999Z"}),
        _dumps(text | {"event_id": e(6), "text": MARK, "ts": "0001-01-01T00:00:00-23:59"}),
        _dumps(text | {"event_id": e(7) + "~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}" + "x" * 60, "text": MARK}),
        _dumps(text | {"event_id": e(8), "text": MARK, "ts": 0}) + b" \n\t ",  # trailing whitespace
    ]
    # Exactly PREFSTREAM_MAX_EVENT_BYTES: padded with whitespace inside the object.
    doc = _dumps(text | {"event_id": e(9), "text": MARK})
    out.append(doc[:-1] + b" " * (LIMITS.max_event_bytes - len(doc)) + b"}")
    assert len(out[-1]) == LIMITS.max_event_bytes
    return out


# --- hostile messages ----------------------------------------------------------------------------------


def _hostile(rng: random.Random, n_random: int) -> list[bytes | None]:
    """Bad messages of every class the issue lists; each is checked below to be rejected by the decoder."""
    good = {"event_id": "h-0", "user_id": rng.choice(USERS), "ts": TS, "kind": "text", "text": MARK}
    g = lambda **kw: {**good, "event_id": f"h-{rng.randrange(10**9)}", **kw}  # noqa: E731
    out: list[bytes | None] = [
        None, None, None,  # tombstones
        b"", b" ", b" \n\t\r ", b"null", b"[]", b"[1,2,3]", b'"' + MARK.encode() + b'"', b"42", b"true", b"{}",
        b"\xef\xbb\xbf" + _dumps(g()),  # BOM
        b"[" * 10_000 + b"]" * 10_000,  # deep
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b"[" * 10_000,  # deep and truncated
        _dumps(g(x=json.loads("[" * MAX_NESTING_DEPTH + "]" * MAX_NESTING_DEPTH))),  # 65 levels in an unknown field
        _dumps(g()).replace(MARK.encode(), b"\\ud800"),  # lone surrogates
        _dumps(g()).replace(MARK.encode(), b"\\udc00" + MARK.encode()),
        _dumps(g()).replace(MARK.encode(), MARK.encode() + b"\\ud83d"),
        _dumps(g()).replace(MARK.encode(), b"\xed\xa0\x80"),  # a surrogate encoded as UTF-8
        _dumps(g()).replace(MARK.encode(), b"\xc0\xaf" + MARK.encode()),  # overlong
        _dumps(g()) + b"\xff",
        b'{"kind":"pair","kind":"click",' + _dumps(g())[1:],  # duplicate keys
        b'{"kind":"pair","kind":"text",' + _dumps(g())[1:],
        _dumps(g(kind="rating", item=MARK, scale=5, score=1)).replace(b'"score": 1', b'"score": NaN'),
        _dumps(g(kind="rating", item=MARK, scale=5, score=1)).replace(b'"score": 1', b'"score": Infinity'),
        _dumps(g(kind="rating", item=MARK, scale=5, score=1)).replace(b'"score": 1', b'"score": -Infinity'),
        _dumps(g(kind="rating", item=MARK, scale=5, score=1)).replace(b'"score": 1', b'"score": 1e400'),
        _dumps(g(kind="rating", item=MARK, scale=5, score=1)).replace(b'"score": 1', b'"score": -1e400'),
        _dumps(g(ts=2**63)), _dumps(g(ts=10**40)), _dumps(g(ts=-(2**63) - 1)), _dumps(g(schema_version=2**64)),
        _dumps(g(kind="rating", item=MARK, scale=2**63 + 5, score=1)),
        _dumps(g(kind="impression", shown=[MARK], clicked=[2**64])),
        _dumps(g(ts="9999-12-31T23:59:59-00:01")), _dumps(g(ts="0001-01-01T00:00:00+00:01")),
        _dumps(g(text="x" * (LIMITS.max_text_chars + 1))),  # just over the bounds
        _dumps(g(text="😀" * (LIMITS.max_text_chars + 1))),
        _dumps(g(kind="impression", shown=[MARK] * (LIMITS.max_items + 1))),
        _dumps(g(kind="conversation", turns=[{"role": "user", "content": MARK}] * (LIMITS.max_turns + 1))),
        _dumps(g(text=MARK * 20_000)),  # a huge string field
        _dumps(g(meta={str(i): MARK for i in range(17)})),
        _dumps(g(kind="forget", event_id="x" * 129)),
        _dumps(g(user_id="")), _dumps(g(user_id="a b")), _dumps(g(user_id="é")),
    ]
    # One byte over PREFSTREAM_MAX_EVENT_BYTES (still far under the broker's 1 MB message limit).
    doc = _dumps(g())
    out.append(doc[:-1] + b" " * (LIMITS.max_event_bytes + 1 - len(doc)) + b"}")
    assert len(out[-1]) == LIMITS.max_event_bytes + 1
    # About the largest value an app's producer and the broker accept (1 MiB requests): the dead letter
    # carries it verbatim, so the worker's own producer and the DLQ topic must take it too.
    out.append(doc[:-1] + b" " * (NEAR_BROKER_LIMIT - len(doc)) + b"}")
    for kind in ["teleport", "Text", "", "click", "pair ", "PAIR"]:  # unknown kinds
        out.append(_dumps(g(kind=kind)))
    wrong_types: list[Any] = [None, True, 1, -1.5, "s", [], {}, [MARK], {"text": MARK}]
    for field in ["kind", "event_id", "user_id", "ts", "text", "meta", "source", "schema_version"]:
        for value in rng.sample(wrong_types, 4):
            doc = g()
            doc[field] = value
            if _verdict(_dumps(doc)) is not None:  # skip the few that are valid (e.g. source "s")
                out.append(_dumps(doc))
    for field in ["event_id", "user_id", "ts", "kind"]:  # missing fields
        out.append(_dumps({k: v for k, v in g().items() if k != field}))
    # Random bytes, random JSON-ish noise and random single-byte corruptions of valid events.
    for i in range(n_random):
        r = i % 3
        if r == 0:
            out.append(rng.randbytes(rng.choice([1, 2, 7, 64, 500, 4000])))
        elif r == 1:
            out.append("".join(rng.choice('{}[]":,0123456789.eE+-tfnul \\"abc') for _ in range(rng.randint(1, 80))).encode())
        else:
            raw = bytearray(_dumps(g()))
            raw[rng.randrange(len(raw))] = rng.choice(b'\x00\xff"{}[],:\\')
            out.append(bytes(raw))
    return [v for v in out if _verdict(v) is not None]


def _hostile_key(rng: random.Random) -> bytes | None:
    return rng.choice([None, rng.choice(USERS).encode(), b"", rng.randbytes(8), b"\xff\xfe", MARK.encode() * 3])


# --- the test ------------------------------------------------------------------------------------------


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": str(PARTITIONS), "PREFSTREAM_LEDGER_CONCURRENCY": "4"}


def _rejected_total(worker: Worker) -> float:
    _, body = worker.get("/metrics")
    return sum(float(line.rpartition(" ")[2]) for line in body.decode().splitlines()
               if line.startswith("prefstream_events_rejected_total{"))  # fmt: skip


@pytest.mark.timeout(300)
def test_hostile_input_is_dead_lettered_and_valid_input_applied(env: dict[str, str], worker: Worker) -> None:
    """~300 bad messages of every class and ~290 valid events for 20 users, interleaved on every partition
    with null, wrong and non-UTF-8 keys: the worker stays up and live; every valid event is applied exactly
    once and each update in event-time order; every bad message has exactly one dead letter naming its source partition and offset
    with the decoder's reason code and a message; the DLQ count and prefstream_events_rejected both equal the
    number of bad messages; no log line holds user text."""
    rng = random.Random(SEED)
    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_EVENTS_TOPIC"]
    producer = RecordingProducer(bootstrap, topic, PARTITIONS)

    # Valid events, per user in order. Each user's events all go to one partition (order is only defined per
    # producer partition): its owner for most, another one for every fourth user; keys vary per event.
    queues: dict[str, list[Sent]] = {}
    expected: dict[str, list[str]] = {}
    for u, user in enumerate(USERS):
        owner = partition_for(user, PARTITIONS)
        route = owner if u % 4 else (owner + 1 + u % 2) % PARTITIONS
        values = [_dumps(_valid_doc(rng, user, f"{user}-e{i}", i)) for i in range(EVENTS_PER_USER)]
        values += _edge_valid(rng, user, f"{user}-x") if u % 2 == 0 else []
        queues[user] = []
        for value in values:
            key = rng.choice([user.encode()] * 3 + [None, f"acct-{user}".encode(), b"\xff" + user.encode()])
            queues[user].append(Sent(route, key, value, None))
            expected.setdefault(user, []).append(json.loads(value)["event_id"])
    hostile = [Sent(i % PARTITIONS, _hostile_key(rng), v, _verdict(v)) for i, v in enumerate(_hostile(rng, 240))]
    rng.shuffle(hostile)
    assert len(hostile) >= 300, len(hostile)
    assert all(h.code for h in hostile)
    assert {h.code for h in hostile} >= {"missing_value", "invalid_json", "invalid_utf8", "too_deep", "wrong_type",
                                         "unknown_kind", "invalid_value", "out_of_range", "too_long", "too_large",
                                         "invalid_ts", "too_many", "missing_field", "invalid_user_id",
                                         "invalid_event_id"}  # fmt: skip

    # Interleave: a random merge of the hostile list and every user's queue (each kept in order).
    order: list[Sent] = []
    pending = {u: list(q) for u, q in queues.items()}
    bad = list(hostile)
    while bad or any(pending.values()):
        users = [u for u, q in pending.items() if q]
        if bad and (not users or rng.random() < len(bad) / (len(bad) + sum(map(len, pending.values())))):
            order.append(bad.pop())
        else:
            order.append(pending[rng.choice(users)].pop(0))
    for s in order:
        s.future = producer.send_raw(s.partition, s.key, s.value)
    producer.flush()
    by_offset = {(h.partition, h.offset): h for h in hostile}
    assert len(by_offset) == len(hostile)

    sc = Scenario(producer)
    sc.expected = expected
    # The edge events carry extreme times (year 1, 9999, epoch 0): an update reads its events by time.
    sc.ts_of = {json.loads(s.value)["event_id"]: ts_to_ms(json.loads(s.value)["ts"]) for q in queues.values() for s in q}
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    dlq = TopicReader(bootstrap, env["PREFSTREAM_DLQ_TOPIC"])

    def state() -> object:
        return (f"mismatches: {sc.mismatches(profiles.by_user)}", f"dead letters: {len(dlq.records)}/{len(hostile)}",
                f"alive: {worker.alive()}", worker.tail(15))  # fmt: skip

    def settled() -> bool:
        assert worker.alive(), f"worker exited:\n{worker.tail(60)}"
        profiles.poll()
        dlq.poll()
        return not sc.mismatches(profiles.by_user) and len(dlq.records) >= len(hostile)

    wait_for(settled, SETTLE_TIMEOUT_S, "profiles and dead letters", state)
    wait_for(lambda: _rejected_total(worker) >= len(hostile), 20, "rejections counted", lambda: _rejected_total(worker))

    # The worker is alive and live.
    assert worker.alive()
    assert worker.get("/livez")[0] == 200

    # Every valid event exactly once, each update in event-time order (ties: the order sent).
    profiles.poll()
    assert not sc.mismatches(profiles.by_user)
    applied = [eid for user in USERS for eid in (profiles.last(user).summary.split("\n"))]  # type: ignore[union-attr]
    assert len(applied) == len(set(applied)) == sum(map(len, expected.values()))

    # Exactly one dead letter per bad message, naming its partition and offset, verbatim, with its reason.
    dlq.poll()
    letters: dict[tuple[int, int], Any] = {}
    for rec in dlq.records:
        headers = parse_dead_letter_headers(rec.headers)
        where = (int(headers["partition"]), int(headers["offset"]))
        assert where not in letters, f"two dead letters for {where}"
        letters[where] = (rec, headers)
    assert set(letters) == set(by_offset), (set(letters) ^ set(by_offset))
    for where, (rec, headers) in letters.items():
        sent = by_offset[where]
        assert headers["topic"] == topic
        assert headers["code"] == sent.code, (where, headers, sent.value[:200] if sent.value else None)
        assert headers["message"] and headers["path"]
        assert (rec.key, rec.value) == (sent.key, sent.value), where
    assert len(dlq.records) == len(hostile)
    assert _rejected_total(worker) == len(hostile)
    assert worker.metric("prefstream_events_received_total") == len(order)

    # No log line holds user text (every text field carried MARK) or a raw user id.
    lines = worker.log_path.read_text(errors="replace").splitlines()
    assert any('"event_rejected"' in line for line in lines)
    for line in lines:
        assert MARK not in line, line
        record = json.loads(line)
        assert not set(USERS) & {str(v) for v in record.values()}, line


@pytest.mark.timeout(180)
def test_a_message_too_large_for_the_dead_letter_topic_is_dead_lettered_without_its_value(
    env: dict[str, str], kafka_topics: Any, tmp_path: Any
) -> None:
    """A dead-letter topic whose `max.message.bytes` is below the rejected message (an operator's choice):
    the worker stays up, the dead letter carries the reason and the size in place of the bytes, and the
    user's next event is applied."""
    from prefstream.schemas.deadletter import VALUE_OMITTED_HEADER

    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_EVENTS_TOPIC"]
    kafka_topics(env["PREFSTREAM_DLQ_TOPIC"], PARTITIONS, {"max.message.bytes": "300000"})
    worker = Worker(env, "a", tmp_path).start()
    try:
        worker.wait_ready()
        producer = RecordingProducer(bootstrap, topic, PARTITIONS)
        user = USERS[0]
        owner = partition_for(user, PARTITIONS)
        doc = _dumps({**_valid_doc(random.Random(SEED), user, "big", 0), "text": "x"})
        big = doc[:-1] + b" " * (400_000 - len(doc)) + b"}"
        sent = producer.send_raw(owner, user.encode(), big)
        after = _dumps(_valid_doc(random.Random(SEED), user, f"{user}-after", 1))
        producer.send_raw(owner, user.encode(), after)
        producer.flush()
        offset = int(sent.get(timeout=30).offset)
        dlq = TopicReader(bootstrap, env["PREFSTREAM_DLQ_TOPIC"])
        profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])

        def done() -> bool:
            assert worker.alive(), f"worker exited:\n{worker.tail(40)}"
            dlq.poll()
            profiles.poll()
            last = profiles.last(user)
            return bool(dlq.records) and last is not None and f"{user}-after" in last.summary

        wait_for(done, SETTLE_TIMEOUT_S, "the dead letter and the next event's profile",
                 lambda: (len(dlq.records), worker.tail(15)))  # fmt: skip
        (letter,) = dlq.records
        headers = parse_dead_letter_headers(letter.headers)
        assert (headers["code"], headers["partition"], headers["offset"]) == ("too_large", str(owner), str(offset))
        assert letter.value is None and letter.key == user.encode()
        assert dict(letter.headers)[VALUE_OMITTED_HEADER] == b"400000"
        assert worker.metric("prefstream_dead_letter_values_omitted_total") == 1
    finally:
        worker.stop()
