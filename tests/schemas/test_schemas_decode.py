"""decode_event: valid events of every kind decode; each kind of bad input yields its documented code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from prefstream.settings import LimitSettings
from prefstream.schemas.decode import decode_event
from prefstream.schemas.errors import REJECT_CODE_DOCS, EventRejected, RejectCode
from prefstream.schemas.events import KINDS, DEFAULT_SCHEMA_VERSION, ImpressionEvent, Item, encode_event
from prefstream.schemas.examples import EXAMPLES

LIMITS = LimitSettings()


def _bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def _example(kind: str) -> dict[str, Any]:
    return json.loads(EXAMPLES[kind])


def _rejected(value: bytes | None, key: bytes | None = None, limits: LimitSettings = LIMITS) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        decode_event(key, value, limits)
    return info.value


@pytest.mark.parametrize("kind", list(KINDS))
def test_examples_decode_to_their_kind(kind: str) -> None:
    """Each documented example decodes, with its key, to the Struct of its kind."""
    doc = _example(kind)
    event = decode_event(doc["user_id"].encode(), EXAMPLES[kind].encode(), LIMITS)
    assert isinstance(event, KINDS[kind])
    assert event.user_id == doc["user_id"]
    assert event.schema_version == DEFAULT_SCHEMA_VERSION


def test_every_kind_has_an_example() -> None:
    """The examples cover exactly the known kinds."""
    assert set(EXAMPLES) == set(KINDS)


def test_null_key_is_accepted() -> None:
    """A null message key is fine: the worker keys by user_id."""
    event = decode_event(None, EXAMPLES["forget"].encode(), LIMITS)
    assert event.user_id == "u-1842"


def test_string_item_is_shorthand_for_text() -> None:
    """A plain string item decodes as the same text an Item would carry."""
    doc = _example("impression")
    doc["shown"] = ["a", {"text": "b", "item_id": "x"}]
    doc["clicked"] = [0]
    event = decode_event(None, _bytes(doc), LIMITS)
    assert isinstance(event, ImpressionEvent)
    assert event.shown == ["a", Item(text="b", item_id="x")]


def test_unknown_fields_are_ignored() -> None:
    """Fields this worker does not know (a newer producer's) are ignored, at any depth."""
    doc = _example("engagement")
    doc["future_field"] = {"nested": [1, 2]}
    doc["item"]["future_item_field"] = True
    event = decode_event(None, _bytes(doc), LIMITS)
    assert event.event_id == doc["event_id"]


def test_encode_event_round_trips() -> None:
    """Encoding a decoded example and decoding it again gives the same event."""
    for kind in KINDS:
        event = decode_event(None, EXAMPLES[kind].encode(), LIMITS)
        assert decode_event(None, encode_event(event), LIMITS) == event


def test_rfc3339_and_epoch_ms_are_both_accepted() -> None:
    """ts may be an RFC 3339 string or integer epoch milliseconds; the JSON type tells them apart."""
    for ts in ["2026-01-31T08:15:00Z", "2026-01-31 08:15:00.123456789+05:30", "2026-01-31t08:15:00z", 0, 1769847300000]:
        doc = _example("forget") | {"ts": ts}
        assert decode_event(None, _bytes(doc), LIMITS).ts == ts


CASES: list[tuple[str, bytes | None, RejectCode, str]] = [
    ("null value", None, RejectCode.MISSING_VALUE, "$"),
    ("bad utf-8", b'{"kind":"forget","event_id":"\xff"}', RejectCode.INVALID_UTF8, "$"),
    ("encoded surrogate", b'{"kind":"text","text":"\xed\xa0\x80"}', RejectCode.INVALID_UTF8, "$"),
    ("not json", b"{kind: forget}", RejectCode.INVALID_JSON, "$"),
    ("truncated array", b"[", RejectCode.INVALID_JSON, "$"),
    ("trailing data", EXAMPLES["forget"].encode() + b" {}", RejectCode.INVALID_JSON, "$"),
    ("NaN", _bytes(_example("rating"))[:-1] + b',"x":NaN}', RejectCode.INVALID_JSON, "$"),
    ("not an object", b"[1, 2]", RejectCode.WRONG_TYPE, "$"),
    ("no kind", _bytes({"event_id": "e", "user_id": "u", "ts": 1}), RejectCode.MISSING_FIELD, "$.kind"),
    ("unknown kind", _bytes(_example("forget") | {"kind": "purchase"}), RejectCode.UNKNOWN_KIND, "$.kind"),
    ("kind not a string", _bytes(_example("forget") | {"kind": 3}), RejectCode.WRONG_TYPE, "$.kind"),
    ("no event_id", _bytes({k: v for k, v in _example("forget").items() if k != "event_id"}), RejectCode.MISSING_FIELD, "$.event_id"),
    ("no item", _bytes({k: v for k, v in _example("rating").items() if k != "item"}), RejectCode.MISSING_FIELD, "$.item"),
    ("item text missing", _bytes(_example("engagement") | {"item": {"item_id": "x"}}), RejectCode.MISSING_FIELD, "$.item.text"),
    ("user_id a number", _bytes(_example("forget") | {"user_id": 7}), RejectCode.WRONG_TYPE, "$.user_id"),
    ("null event_id", _bytes(_example("forget") | {"event_id": None}), RejectCode.WRONG_TYPE, "$.event_id"),
    ("ts float", _bytes(_example("forget") | {"ts": 1.5}), RejectCode.WRONG_TYPE, "$.ts"),
    ("ts bool", _bytes(_example("forget") | {"ts": True}), RejectCode.WRONG_TYPE, "$.ts"),
    ("score string", _bytes(_example("rating") | {"score": "4"}), RejectCode.WRONG_TYPE, "$.score"),
    ("user_id space", _bytes(_example("forget") | {"user_id": "a b"}), RejectCode.INVALID_USER_ID, "$.user_id"),
    ("user_id empty", _bytes(_example("forget") | {"user_id": ""}), RejectCode.INVALID_USER_ID, "$.user_id"),
    ("user_id too long", _bytes(_example("forget") | {"user_id": "u" * 129}), RejectCode.INVALID_USER_ID, "$.user_id"),
    ("event_id empty", _bytes(_example("forget") | {"event_id": ""}), RejectCode.INVALID_EVENT_ID, "$.event_id"),
    ("event_id non-ascii", _bytes(_example("forget") | {"event_id": "é"}), RejectCode.INVALID_EVENT_ID, "$.event_id"),
    ("ts no offset", _bytes(_example("forget") | {"ts": "2026-01-31T08:15:00"}), RejectCode.INVALID_TS, "$.ts"),
    ("ts date only", _bytes(_example("forget") | {"ts": "2026-01-31"}), RejectCode.INVALID_TS, "$.ts"),
    ("ts Feb 30", _bytes(_example("forget") | {"ts": "2025-02-30T00:00:00Z"}), RejectCode.INVALID_TS, "$.ts"),
    ("ts negative", _bytes(_example("forget") | {"ts": -1}), RejectCode.INVALID_TS, "$.ts"),
    ("ts year 10000", _bytes(_example("forget") | {"ts": 253402300800000}), RejectCode.INVALID_TS, "$.ts"),
    ("empty text", _bytes(_example("text") | {"text": ""}), RejectCode.TOO_SHORT, "$.text"),
    ("text too long", _bytes(_example("text") | {"text": "x" * 8001}), RejectCode.TOO_LONG, "$.text"),
    ("shown text too long", _bytes(_example("impression") | {"shown": ["a", "é" * 8001], "clicked": []}), RejectCode.TOO_LONG, "$.shown[1]"),
    ("too many shown", _bytes(_example("impression") | {"shown": ["a"] * 51}), RejectCode.TOO_MANY, "$.shown"),
    ("too many turns", _bytes(_example("conversation") | {"turns": [{"role": "user", "content": "x"}] * 101}), RejectCode.TOO_MANY, "$.turns"),
    ("too many meta", _bytes(_example("forget") | {"meta": {str(i): "v" for i in range(17)}}), RejectCode.TOO_MANY, "$.meta"),
    ("no shown", _bytes(_example("impression") | {"shown": [], "clicked": []}), RejectCode.TOO_FEW, "$.shown"),
    ("no turns", _bytes(_example("conversation") | {"turns": []}), RejectCode.TOO_FEW, "$.turns"),
    ("score above scale", _bytes(_example("rating") | {"score": 6}), RejectCode.OUT_OF_RANGE, "$.score"),
    ("negative score", _bytes(_example("rating") | {"score": -1}), RejectCode.OUT_OF_RANGE, "$.score"),
    ("scale zero", _bytes(_example("rating") | {"scale": 0, "score": 0}), RejectCode.OUT_OF_RANGE, "$.scale"),
    ("click past shown", _bytes(_example("impression") | {"clicked": [3]}), RejectCode.OUT_OF_RANGE, "$.clicked[0]"),
    ("negative click", _bytes(_example("impression") | {"clicked": [-1]}), RejectCode.OUT_OF_RANGE, "$.clicked[0]"),
    ("schema_version 0", _bytes(_example("forget") | {"schema_version": 0}), RejectCode.OUT_OF_RANGE, "$.schema_version"),
    ("duplicate click", _bytes(_example("impression") | {"clicked": [1, 1]}), RejectCode.DUPLICATE_VALUE, "$.clicked[1]"),
    ("bad role", _bytes(_example("conversation") | {"turns": [{"role": "bot", "content": "x"}]}), RejectCode.INVALID_VALUE, "$.turns[0].role"),
    ("bad domain", _bytes(_example("rating") | {"domain": "Movies!"}), RejectCode.INVALID_VALUE, "$.domain"),
    ("deep array", b"[" * 10_000 + b"]" * 10_000, RejectCode.TOO_DEEP, "$"),
    ("deep unknown field", EXAMPLES["forget"].encode()[:-1] + b', "x": ' + b"[" * 65 + b"]" * 65 + b"}", RejectCode.TOO_DEEP, "$"),
    ("deep and unterminated", b'{"a":' * 5_000, RejectCode.TOO_DEEP, "$"),
    ("ts offset past 9999", _bytes(_example("forget") | {"ts": "9999-12-31T23:59:59-00:01"}), RejectCode.INVALID_TS, "$.ts"),
    ("ts offset before 0001", _bytes(_example("forget") | {"ts": "0001-01-01T00:00:00+00:01"}), RejectCode.INVALID_TS, "$.ts"),
    ("score 1e400", EXAMPLES["rating"].encode().replace(b'"score": 4.5', b'"score": 1e400'), RejectCode.OUT_OF_RANGE, "$.score"),
    ("ts 1e400", _bytes(_example("forget")).replace(b'"ts": "2026-02-01T00:00:00Z"', b'"ts": 1e400'), RejectCode.INVALID_TS, "$.ts"),
    ("scale past int64", _bytes(_example("rating")).replace(b'"scale": 5', b'"scale": ' + b"9" * 40), RejectCode.OUT_OF_RANGE, "$.scale"),
    ("kind repeated, different", b'{"kind": "text", "kind": "pair", "event_id": "e", "user_id": "u", "ts": 1, "text": "a"}', RejectCode.INVALID_VALUE, "$.kind"),
    ("NaN", EXAMPLES["rating"].encode().replace(b'"score": 4.5', b'"score": NaN'), RejectCode.INVALID_JSON, "$"),
    ("BOM", b"\xef\xbb\xbf" + EXAMPLES["forget"].encode(), RejectCode.INVALID_JSON, "$"),
    ("lone surrogate", _bytes(_example("text")).replace(b'"text": "', b'"text": "\\ud800'), RejectCode.INVALID_JSON, "$"),
    ("empty value", b"", RejectCode.INVALID_JSON, "$"),
    ("whitespace only", b" \n\t ", RejectCode.INVALID_JSON, "$"),
    ("null document", b"null", RejectCode.WRONG_TYPE, "$"),
    ("tenant with a slash", _bytes(_example("forget") | {"tenant": "a/b"}), RejectCode.INVALID_TENANT, "$.tenant"),
    ("tenant empty", _bytes(_example("forget") | {"tenant": ""}), RejectCode.INVALID_TENANT, "$.tenant"),
    ("tenant starts with _", _bytes(_example("forget") | {"tenant": "_other"}), RejectCode.INVALID_TENANT, "$.tenant"),
    ("tenant too long", _bytes(_example("forget") | {"tenant": "t" * 65}), RejectCode.INVALID_TENANT, "$.tenant"),
    ("tenant not a string", _bytes(_example("forget") | {"tenant": 7}), RejectCode.WRONG_TYPE, "$.tenant"),
]


@pytest.mark.parametrize(("value", "code", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_with_its_code(value: bytes | None, code: RejectCode, path: str) -> None:
    """Each malformed event is rejected with its documented code and the path of the offending field."""
    error = _rejected(value)
    assert (error.code, error.path) == (code, path), error


def test_every_code_is_exercised_and_documented() -> None:
    """Every RejectCode has a documentation line and at least one test case (key_mismatch and too_large below)."""
    assert set(REJECT_CODE_DOCS) == set(RejectCode)
    exercised = {c[2] for c in CASES} | {RejectCode.KEY_MISMATCH, RejectCode.TOO_LARGE}
    assert exercised == set(RejectCode)


def test_key_must_match_user_id() -> None:
    """A key that is not the UTF-8 bytes of user_id is rejected; so is an empty key."""
    for key in [b"someone-else", b"", b"u-1842 "]:
        error = _rejected(EXAMPLES["forget"].encode(), key=key)
        assert (error.code, error.path) == (RejectCode.KEY_MISMATCH, "$.user_id")


def test_size_limit_is_checked_on_bytes_at_and_past_the_bound() -> None:
    """A value of exactly max_event_bytes is accepted, one byte more is too_large."""
    raw = EXAMPLES["forget"].encode()
    exact = LimitSettings(max_event_bytes=len(raw))
    assert decode_event(None, raw, exact).event_id == "gdpr-req-2026-0042"
    error = _rejected(raw + b" ", limits=exact)
    assert (error.code, error.path) == (RejectCode.TOO_LARGE, "$")


def test_configured_limits_replace_the_defaults() -> None:
    """Raising max_text_chars admits a longer text; lowering max_items rejects a shorter list."""
    long_text = _bytes(_example("text") | {"text": "x" * 9000})
    assert decode_event(None, long_text, LimitSettings(max_text_chars=9000))
    error = _rejected(EXAMPLES["impression"].encode(), limits=LimitSettings(max_items=2))
    assert (error.code, error.path) == (RejectCode.TOO_MANY, "$.shown")


def test_messages_never_quote_rejected_values() -> None:
    """Error messages say what was expected and where, without echoing the (possibly personal) value."""
    secret = "my-secret-diagnosis"
    for doc in [
        _example("conversation") | {"turns": [{"role": secret, "content": "x"}]},
        _example("forget") | {"kind": secret},
        _example("text") | {"text": secret * 1000},
    ]:
        error = _rejected(_bytes(doc))
        assert secret not in str(error)


def test_limit_settings_refuse_unusable_bounds() -> None:
    """Limits below 1 (or a byte limit too small for any event) are refused at start-up."""
    from prefstream.errors import ConfigError
    from prefstream.settings import load_section

    for env in [{"PREFSTREAM_MAX_ITEMS": "0"}, {"PREFSTREAM_MAX_TEXT_CHARS": "-1"}, {"PREFSTREAM_MAX_EVENT_BYTES": "10"}]:
        with pytest.raises(ConfigError):
            load_section(LimitSettings, env)
    assert load_section(LimitSettings, {"PREFSTREAM_MAX_TURNS": "7"}).max_turns == 7


def test_nesting_up_to_the_bound_is_accepted_even_in_unknown_fields() -> None:
    """Unknown fields are ignored at any depth up to MAX_NESTING_DEPTH (the event object is level 1); one more
    level is too_deep; brackets inside strings do not count, escaped quotes included."""
    from prefstream.schemas.decode import MAX_NESTING_DEPTH

    def nested(levels: int) -> bytes:  # the event object plus `levels` - 1 levels in an unknown field
        inner = levels - 1
        return EXAMPLES["forget"].encode()[:-1] + b', "x": ' + b"[" * inner + b"]" * inner + b"}"

    assert decode_event(None, nested(MAX_NESTING_DEPTH), LIMITS).event_id == "gdpr-req-2026-0042"
    assert _rejected(nested(MAX_NESTING_DEPTH + 1)).code == RejectCode.TOO_DEEP
    in_strings = _bytes(_example("text") | {"text": "[{" * 3_000 + '\\"' + "[" * 100, "context": '"' + "{" * 100})
    assert decode_event(None, in_strings, LIMITS).text.startswith("[{")


def test_duplicate_names_last_wins_like_json_loads() -> None:
    """A repeated member name takes its last value, as Python's json (the JSON Schema side) reads it; a
    repeated `kind` with the same value is accepted."""
    doc = b'{"kind": "text", "kind": "text", "event_id": "e1", "user_id": "first", "ts": 1, "text": "a", "user_id": "last"}'
    event = decode_event(None, doc, LIMITS)
    assert event.user_id == json.loads(doc)["user_id"] == "last"


def test_ts_range_is_what_profiles_can_write() -> None:
    """Every accepted ts converts to epoch ms that ms_to_rfc3339 writes back as a four-digit-year RFC 3339 string
    (a `ts` past 9999 in UTC crashed the worker when it wrote the profile's last_event_ts)."""
    from prefstream.schemas.timefmt import MIN_EPOCH_MS, ms_to_rfc3339, ts_to_ms

    for ts in ["9999-12-31T23:59:59+00:01", "9999-12-31T23:59:59.999Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00-23:59"]:
        event = decode_event(None, _bytes(_example("forget") | {"ts": ts}), LIMITS)
        assert ms_to_rfc3339(ts_to_ms(event.ts))[:4].isdigit()
    assert ms_to_rfc3339(MIN_EPOCH_MS) == "0001-01-01T00:00:00.000Z"
    assert ms_to_rfc3339(ts_to_ms("0999-05-06T07:08:09.010Z")) == "0999-05-06T07:08:09.010Z"
    with pytest.raises(ValueError):
        ts_to_ms("9999-12-31T23:59:59-23:59")


def test_tenant_is_part_of_the_key() -> None:
    """With a tenant the key is `tenant/user_id`; the bare user id is then a mismatch, and without a tenant
    the key stays the user id (version 1 producers are unaffected)."""
    doc = _example("forget") | {"tenant": "shop-eu", "schema_version": 2}
    event = decode_event(b"shop-eu/" + doc["user_id"].encode(), _bytes(doc), LIMITS)
    assert (event.tenant, event.user_id, event.schema_version) == ("shop-eu", doc["user_id"], 2)
    error = _rejected(_bytes(doc), key=doc["user_id"].encode())
    assert error.code == RejectCode.KEY_MISMATCH
    plain = decode_event(doc["user_id"].encode(), EXAMPLES["forget"].encode(), LIMITS)
    assert plain.tenant is None


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("ts", '"2026-01-31T08:15:00"', "expected an RFC 3339 date and time with a zone: `Z` or an offset"),
        ("user_id", '"u 1"', "expected 1 to 128 characters from A-Z a-z 0-9 . _ - : @ + ="),
        ("event_id", '"e 1"', "expected 1 to 128 printable ASCII characters, no spaces"),
        ("domain", '"Books"', "expected 2 to 40 lowercase letters and spaces, starting and ending with a letter"),
    ],
)
def test_pattern_rejections_say_what_is_expected_in_words(field: str, value: str, expected: str) -> None:
    """A value of the wrong form is rejected with what is expected in words, never the raw regex (issue #9)."""
    fields = {"event_id": '"e1"', "user_id": '"u1"', "ts": "1", "kind": '"pair"', "chosen": '"a"', "rejected": '"b"',
              "domain": '"books"'}  # fmt: skip
    fields[field] = value
    raw = ("{" + ",".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()
    with pytest.raises(EventRejected) as caught:
        decode_event(None, raw, LimitSettings())
    assert caught.value.path == f"$.{field}"
    assert str(caught.value).split(": ", 1)[1].startswith(expected)
    assert "regex" not in str(caught.value) and "^" not in str(caught.value)
