"""The typed builders and `validate()`: what the worker accepts passes, the rest fails in the app with its reject code."""

from __future__ import annotations

import json

import msgspec
import pytest

from prefstream.client import events
from prefstream.client.wire import RECORD_OVERHEAD_BYTES, validate
from prefstream.schemas.decode import decode_event
from prefstream.schemas.errors import EventRejected, RejectCode
from prefstream.schemas.events import KINDS, Event, encode_event
from prefstream.schemas.examples import EXAMPLES
from prefstream.settings import LimitSettings
from tests.client.samples import every_kind

LIMITS = LimitSettings()


def test_builders_cover_every_kind_and_pass_the_workers_decoder() -> None:
    """Every kind has a builder; what it builds validates, and decodes back to the same event."""
    built = every_kind("u-1")
    assert sorted(type(e).__struct_config__.tag for e in built) == sorted(KINDS)
    for event in built:
        prepared = validate(event, LIMITS)
        assert prepared.key == b"u-1" and prepared.event_id == event.event_id
        assert decode_event(prepared.key, prepared.value, LIMITS) == event


def test_examples_as_bytes_pass_unchanged() -> None:
    """JSON bytes are validated and sent as they are (fields this version does not know survive)."""
    for text in EXAMPLES.values():
        raw = json.dumps({**json.loads(text), "future_field": 1}).encode()
        assert validate(raw, LIMITS).value == raw


@pytest.mark.parametrize(
    ("event", "code", "path"),
    [
        (events.pair("u 1", "e", chosen="a", rejected="b"), RejectCode.INVALID_USER_ID, "$.user_id"),
        (events.rating("u", "e", item="x", score=6, scale=5), RejectCode.OUT_OF_RANGE, "$.score"),
        (events.impression("u", "e", shown=["a"], clicked=[3]), RejectCode.OUT_OF_RANGE, "$.clicked[0]"),
        (events.text("u", "e", text=""), RejectCode.TOO_SHORT, "$.text"),
        (events.pair("u", "e", chosen="a", rejected="b", ts="2026-01-31T08:15:00"), RejectCode.INVALID_TS, "$.ts"),
    ],
)
def test_bad_events_fail_with_the_workers_code(event: Event, code: RejectCode, path: str) -> None:
    """A bad event raises `EventRejected` with the code and path the worker's dead letter would carry."""
    with pytest.raises(EventRejected) as caught:
        validate(event, LIMITS)
    assert (caught.value.code, caught.value.path) == (code, path)
    with pytest.raises(EventRejected) as worker_side:
        decode_event(None, encode_event(event), LIMITS)
    assert worker_side.value.code == code


def test_one_megabyte_event_fails_in_the_client() -> None:
    """A 1 MB event is `too_large` against the worker's limit, before any broker could refuse it."""
    big = events.text("u", "big", text="x" * 1_048_576)
    with pytest.raises(EventRejected) as caught:
        validate(big, LimitSettings(max_text_chars=2_000_000))
    assert caught.value.code == RejectCode.TOO_LARGE
    assert str(caught.value) == f"too_large at $: expected at most 262144 bytes, got {len(encode_event(big))}"


def test_topic_limit_is_checked_when_above_the_workers() -> None:
    """With the worker's limit raised past the topic's max.message.bytes, the topic's limit fails the event."""
    limits = LimitSettings(max_event_bytes=4 * 1024 * 1024, max_text_chars=2_000_000)
    big = events.text("u", "big", text="x" * 1_048_576)
    size = len(encode_event(big))
    with pytest.raises(EventRejected) as caught:
        validate(big, limits, max_message_bytes=1_048_588)
    assert caught.value.code == RejectCode.TOO_LARGE
    assert "max.message.bytes, 1048588" in str(caught.value) and f"got {size}" in str(caught.value)
    assert validate(big, limits, max_message_bytes=size + RECORD_OVERHEAD_BYTES).value == encode_event(big)


def test_bytes_that_are_not_an_event_are_rejected() -> None:
    """Arbitrary bytes fail as the worker would reject them (here: not JSON)."""
    with pytest.raises(EventRejected) as caught:
        validate(b"{not json", LIMITS)
    assert caught.value.code == RejectCode.INVALID_JSON
    assert msgspec.json.decode(encode_event(events.forget("u", "f")))["kind"] == "forget"
