"""Property-based tests: every kind round-trips, arbitrary bytes never crash the decoder, random edits agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from prefstream.settings import LimitSettings
from prefstream.schemas.decode import decode_event
from prefstream.schemas.errors import EventRejected, RejectCode
from prefstream.schemas.events import (
    ConversationEvent,
    EngagementEvent,
    Event,
    ForgetEvent,
    ImpressionEvent,
    Item,
    PairEvent,
    RatingEvent,
    TextEvent,
    Turn,
    encode_event,
)
from prefstream.schemas.evidence import to_evidence
from prefstream.schemas.examples import EXAMPLES
from prefstream.schemas.timefmt import ms_to_rfc3339, ts_to_ms

LIMITS = LimitSettings()
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "json" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
FAST = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])

# Text without surrogates (not encodable as UTF-8); short, so runs stay fast.
texts = st.text(min_size=1, max_size=40)
opt_texts = st.none() | st.text(max_size=40)
items = texts | st.builds(Item, text=texts, item_id=st.none() | st.text(alphabet="abc123", min_size=1, max_size=8))
user_ids = st.text(alphabet="abcXYZ019._:@+=-", min_size=1, max_size=20)
event_ids = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
epoch_ms = st.integers(min_value=0, max_value=253_402_300_799_999)
ts = epoch_ms | epoch_ms.map(ms_to_rfc3339)
domains = st.none() | st.sampled_from(["news", "books", "movies", "board games"])
meta = st.none() | st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4)
common = dict(event_id=event_ids, user_id=user_ids, ts=ts, source=st.none() | st.text(min_size=1, max_size=10), meta=meta)


@st.composite
def impressions(draw: st.DrawFn) -> ImpressionEvent:
    shown = draw(st.lists(items, min_size=1, max_size=8))
    clicked = draw(st.lists(st.integers(0, len(shown) - 1), unique=True, max_size=len(shown)))
    return ImpressionEvent(
        shown=shown, clicked=clicked, query=draw(opt_texts), domain=draw(domains), **{k: draw(v) for k, v in common.items()}
    )


@st.composite
def ratings(draw: st.DrawFn) -> RatingEvent:
    scale = draw(st.integers(1, 100))
    score = draw(st.floats(min_value=0, max_value=scale, allow_nan=False))
    return RatingEvent(
        item=draw(items), score=score, scale=scale, query=draw(opt_texts), domain=draw(domains),
        **{k: draw(v) for k, v in common.items()},
    )


EVENTS: dict[str, st.SearchStrategy[Any]] = {
    "pair": st.builds(PairEvent, chosen=items, rejected=items, query=opt_texts, domain=domains, **common),
    "impression": impressions(),
    "engagement": st.builds(EngagementEvent, item=items, negatives=st.lists(items, max_size=5), query=opt_texts, domain=domains, **common),
    "rating": ratings(),
    "text": st.builds(TextEvent, text=texts, context=opt_texts, **common),
    "conversation": st.builds(
        ConversationEvent,
        turns=st.lists(st.builds(Turn, role=st.sampled_from(["user", "assistant", "system"]), content=st.text(max_size=30)), min_size=1, max_size=6),
        **common,
    ),
    "forget": st.builds(ForgetEvent, **common),
}


def _check_round_trip(event: Event) -> None:
    raw = encode_event(event)
    assert VALIDATOR.is_valid(json.loads(raw)), list(VALIDATOR.iter_errors(json.loads(raw)))[:1]
    decoded = decode_event(event.user_id.encode(), raw, LIMITS)
    assert decoded == event
    evidence = to_evidence(decoded)
    assert evidence == to_evidence(decode_event(None, raw, LIMITS))  # deterministic
    assert evidence.event_id == event.event_id
    assert all(t.query and t.chosen and t.rejected for t in evidence.triples)


@FAST
@given(EVENTS["pair"])
def test_pair_round_trips(event: PairEvent) -> None:
    """Any valid pair validates against the schema, decodes to itself and maps to one triple."""
    _check_round_trip(event)
    assert len(to_evidence(event).triples) == 1


@FAST
@given(EVENTS["impression"])
def test_impression_round_trips(event: ImpressionEvent) -> None:
    """Any valid impression round-trips and yields one triple per click, never rejecting a clicked item."""
    _check_round_trip(event)
    triples = to_evidence(event).triples
    assert len(triples) == len(event.clicked)


@FAST
@given(EVENTS["engagement"])
def test_engagement_round_trips(event: EngagementEvent) -> None:
    """Any valid engagement round-trips and maps to one triple."""
    _check_round_trip(event)
    assert len(to_evidence(event).triples) == 1


@FAST
@given(EVENTS["rating"])
def test_rating_round_trips(event: RatingEvent) -> None:
    """Any valid rating round-trips and maps to at most one triple."""
    _check_round_trip(event)
    assert len(to_evidence(event).triples) <= 1


@FAST
@given(EVENTS["text"])
def test_text_round_trips(event: TextEvent) -> None:
    """Any valid text event round-trips and maps to one triple."""
    _check_round_trip(event)


@FAST
@given(EVENTS["conversation"])
def test_conversation_round_trips(event: ConversationEvent) -> None:
    """Any valid conversation round-trips and yields at most one triple per user turn."""
    _check_round_trip(event)
    assert len(to_evidence(event).triples) <= sum(t.role == "user" for t in event.turns)


@FAST
@given(EVENTS["forget"])
def test_forget_round_trips(event: ForgetEvent) -> None:
    """Any valid forget round-trips and yields no triples."""
    _check_round_trip(event)


@FAST
@given(epoch_ms)
def test_timestamp_formats_agree(ms: int) -> None:
    """An instant written as RFC 3339 or as epoch milliseconds converts to the same milliseconds."""
    assert ts_to_ms(ms_to_rfc3339(ms)) == ms


@settings(max_examples=300)
@given(st.binary(max_size=300), st.none() | st.binary(max_size=10))
def test_arbitrary_bytes_are_rejected_never_crash(value: bytes, key: bytes | None) -> None:
    """Arbitrary bytes either decode or raise EventRejected with a known code, never anything else."""
    try:
        decode_event(key, value, LIMITS)
    except EventRejected as e:
        assert e.code in set(RejectCode)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _locations(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out.extend(_locations(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out.extend(_locations(v, (*prefix, i)))
    return out


def _integral_float(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, list):
        return any(_integral_float(v) for v in value)
    if isinstance(value, dict):
        return any(_integral_float(v) for v in value.values())
    return False


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(EXAMPLES)), st.data())
def test_random_single_edits_get_the_same_verdict(kind: str, data: st.DataObject) -> None:
    """Replacing any one value of an example with arbitrary JSON gets the same verdict from schema and decoder."""
    doc = json.loads(EXAMPLES[kind])
    path = data.draw(st.sampled_from(_locations(doc)))
    value = data.draw(json_values)
    # Known, documented divergences: JSON Schema counts 2.0 as an integer (msgspec does not), and
    # cross-field checks (score <= scale, clicked < len(shown), real dates) are beyond JSON Schema.
    assume(not _integral_float(value))
    target = doc
    for tok in path[:-1]:
        target = target[tok]
    target[path[-1]] = value
    raw = json.dumps(doc, ensure_ascii=False).encode()
    by_schema = VALIDATOR.is_valid(json.loads(raw))
    try:
        decode_event(None, raw, LIMITS)
        by_decoder, code = True, None
    except EventRejected as e:
        by_decoder, code = False, e.code
    semantic = code in (RejectCode.INVALID_TS, RejectCode.OUT_OF_RANGE, RejectCode.DUPLICATE_VALUE) and by_schema
    assume(not semantic)
    assert by_schema == by_decoder, (path, value, code)
