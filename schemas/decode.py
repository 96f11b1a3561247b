"""`decode_event`: bytes from the events topic to a typed event, or `EventRejected` with a stable code.

Checks run in this order; the first failure is reported:

1. the value is present (`missing_value`), at most `max_event_bytes` long (`too_large`), valid UTF-8
   (`invalid_utf8`) and nests arrays and objects at most `MAX_NESTING_DEPTH` deep (`too_deep`);
2. msgspec decodes it against the Structs of `schemas.events` (JSON syntax, `kind`, required fields,
   types and the static bounds; unknown fields are ignored);
3. the message key, when the caller passes one, equals the UTF-8 bytes of `user_id`, or of
   `tenant/user_id` when the event has a tenant (`key_mismatch`);
   pass None to skip (the worker does, and forwards mis-keyed events to the partition owning `user_id`);
4. the configured bounds of `LimitSettings` (`too_long`, `too_many`);
5. the checks JSON Schema cannot state: `ts` names a real date (`invalid_ts`), `clicked` indices point
   into `shown` and are distinct (`out_of_range`, `duplicate_value`), `score` <= `scale` (`out_of_range`).

A bad message raises `EventRejected`, never anything else: arbitrary bytes are a test case.

Edge cases of JSON itself (RFC 8259 leaves them to the parser; `docs/schemas.md` lists them too):

- a repeated member name: the last occurrence wins, as in Python's `json`, JavaScript's `JSON.parse` and
  Go, hence as the JSON Schema side sees the document; except `kind`, which selects the variant when it
  is first read: a later `kind` with a different value is rejected (`invalid_value` at `$.kind`) rather
  than silently retyping the event;
- `NaN`, `Infinity`, a byte order mark, a lone UTF-16 surrogate escape, an empty or whitespace-only
  value: not JSON (`invalid_json`);
- a number too large for a 64-bit float (`1e400`) or an integer past a field's bound (however many
  digits): `out_of_range` (or the field's own code) when it is in a known field; ignored, like any value,
  in an unknown field;
- nesting deeper than `MAX_NESTING_DEPTH` (`too_deep`), anywhere, unknown fields included: checked on the
  raw bytes before parsing, so the verdict does not depend on how deep the caller's stack is.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

import msgspec

from prefstream.settings import LimitSettings
from prefstream.schemas import bounds
from prefstream.schemas.errors import EventRejected, RejectCode
from prefstream.schemas.events import KINDS, Event, ImpressionEvent, RatingEvent
from prefstream.schemas.keys import event_key
from prefstream.schemas.timefmt import ts_to_ms

_DECODER: Final = msgspec.json.Decoder(Event)

#: Deepest nesting of arrays and objects accepted (`{}` and `[]` are depth 1). An event needs 3 (an item
#: object in a list in the event); the bound leaves room for unknown fields while keeping msgspec far
#: from Python's recursion limit, which it would otherwise hit (RecursionError) at a depth that depends
#: on the caller's stack.
MAX_NESTING_DEPTH: Final = 64
#: A JSON string, escapes included; an unterminated one runs to the end. It never fails once it has
#: started, so it cannot backtrack: the scan stays linear on hostile input.
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.?[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP: Final = [1 if chr(b) in "[{" else -1 for b in range(256)]

_AT = re.compile(r"^(?P<msg>.*?)(?: - at (?:`key` in )?`(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_LENGTH = re.compile(r"^Expected `(?P<type>\w+)` of length (?P<op><=|>=) (?P<bound>\d+)$")
_NUMBER = re.compile(r"^Expected `(?:int|float)` (?:<=|>=|<|>) [-0-9.e+]+$")
_REGEX = re.compile(r"^Expected `str` matching regex ")
_GOT = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")

#: Paths whose every constraint violation has its own code (the field's format is the contract).
# What each pattern means, in words: a rejection says what was expected, never the raw regex.
_PATTERN_WORDS: Final = {
    bounds.TS_PATTERN: "expected an RFC 3339 date and time with a zone: `Z` or an offset such as `+01:00` (e.g. "
    "2026-01-31T08:15:00Z), or an integer of epoch milliseconds; a time without a zone names no instant",
    bounds.USER_ID_PATTERN: "expected 1 to 128 characters from A-Z a-z 0-9 . _ - : @ + =",
    bounds.EVENT_ID_PATTERN: "expected 1 to 128 printable ASCII characters, no spaces",
    bounds.DOMAIN_PATTERN: "expected 2 to 40 lowercase letters and spaces, starting and ending with a letter",
}

_FIELD_CODES: Final = {
    "$.user_id": RejectCode.INVALID_USER_ID,
    "$.event_id": RejectCode.INVALID_EVENT_ID,
    "$.ts": RejectCode.INVALID_TS,
    "$.tenant": RejectCode.INVALID_TENANT,
}


def decode_event(key: bytes | None, value: bytes | None, limits: LimitSettings) -> Event:
    """Decode one message of the events topic. Raises `EventRejected` for anything that is not a valid event."""
    # 1. Cheap checks on the raw bytes, before any parsing.
    if value is None:
        raise EventRejected(RejectCode.MISSING_VALUE, "$", "expected an event, got a null value (tombstone)")
    if len(value) > limits.max_event_bytes:
        raise EventRejected(
            RejectCode.TOO_LARGE, "$", f"expected at most {limits.max_event_bytes} bytes, got {len(value)}"
        )
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EventRejected(RejectCode.INVALID_UTF8, "$", f"value is not valid UTF-8 at byte {e.start}") from None
    if _nesting_depth(value) > MAX_NESTING_DEPTH:
        raise _too_deep()

    # 2. Structure, types and static bounds.
    try:
        event = _DECODER.decode(value)
    except msgspec.ValidationError as e:
        # msgspec stops at the first type error, possibly before a syntax error further on: a document
        # that is not well-formed JSON is reported as such whatever else is wrong with it.
        try:
            msgspec.json.decode(value)
        except msgspec.ValidationError:
            pass  # well-formed, but a number is past float64 (`1e400`, maybe in an unknown field): not syntax
        except (msgspec.DecodeError, UnicodeDecodeError) as syntax:
            raise EventRejected(RejectCode.INVALID_JSON, "$", _strip_values(str(syntax))) from None
        except RecursionError:
            raise _too_deep() from None
        raise _translate(str(e)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise EventRejected(RejectCode.INVALID_JSON, "$", _strip_values(str(e))) from None
    except RecursionError:
        raise _too_deep() from None  # unreachable after the depth check, kept so no input can escape as one

    # 3. The key partitions the topic: a key that is not this user's would put the event on the wrong worker.
    if key is not None and key != event_key(event):
        raise EventRejected(RejectCode.KEY_MISMATCH, "$.user_id",
                            "message key differs from the UTF-8 bytes of user_id (tenant/user_id with a tenant)")

    # 4. Bounds operators configure.
    for violation in bounds.iter_violations(event, Event, limits):  # type: ignore[arg-type]
        if violation.limit == "max_text_chars":
            raise EventRejected(
                RejectCode.TOO_LONG,
                violation.path,
                f"expected at most {violation.bound} characters, got {violation.actual}",
            )
        raise EventRejected(
            RejectCode.TOO_MANY, violation.path, f"expected at most {violation.bound} entries, got {violation.actual}"
        )

    # 5. Cross-field and calendar checks.
    _check_semantics(event)
    return event


def _nesting_depth(value: bytes) -> int:
    """How deep arrays and objects nest in `value` (brackets inside strings do not count). Linear time."""
    opening = value.count(b"[") + value.count(b"{")
    if opening <= MAX_NESTING_DEPTH:
        return opening  # an upper bound, and within the limit: no need to look closer
    brackets = _JSON_STRING.sub(b"", value).translate(None, _NOT_BRACKET)
    return max(itertools.accumulate(_DEPTH_STEP[b] for b in brackets), default=0)


def _too_deep() -> EventRejected:
    return EventRejected(
        RejectCode.TOO_DEEP, "$", f"expected arrays and objects nested at most {MAX_NESTING_DEPTH} deep"
    )


def _check_semantics(event: Event) -> None:
    try:
        ts_to_ms(event.ts)
    except ValueError:
        raise EventRejected(
            RejectCode.INVALID_TS,
            "$.ts",
            "expected a date and time that exist, from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z in UTC",
        ) from None
    if isinstance(event, ImpressionEvent):
        seen: set[int] = set()
        for i, index in enumerate(event.clicked):
            if index >= len(event.shown):
                raise EventRejected(
                    RejectCode.OUT_OF_RANGE,
                    f"$.clicked[{i}]",
                    f"expected an index into shown (0 to {len(event.shown) - 1}), got {index}",
                )
            if index in seen:
                raise EventRejected(RejectCode.DUPLICATE_VALUE, f"$.clicked[{i}]", f"index {index} is listed twice")
            seen.add(index)
    elif isinstance(event, RatingEvent) and event.score > event.scale:
        raise EventRejected(
            RejectCode.OUT_OF_RANGE, "$.score", f"expected a score between 0 and scale ({event.scale})"
        )


def _translate(text: str) -> EventRejected:
    """Map a msgspec ValidationError message to our stable code and path (pinned by tests per code)."""
    m = _AT.match(text)
    msg, path = (m.group("msg"), m.group("path") or "$") if m else (text, "$")
    if " - at `key` in `" in text:
        path += "[key]"  # a map key, not its value (which msgspec writes as `[...]`)
    missing = _MISSING.match(msg)
    if missing:
        field_path = f"{path}.{missing.group('field')}"
        message = f"required field `{missing.group('field')}` is absent"
        return EventRejected(RejectCode.MISSING_FIELD, field_path, message)
    if path == "$.kind" and msg.startswith("Invalid value"):
        if msg in {f"Invalid value '{kind}'" for kind in KINDS}:
            # A known kind refused: `kind` was read before with another value (a repeated member name).
            return EventRejected(RejectCode.INVALID_VALUE, path, "`kind` appears more than once, with different values")
        return EventRejected(RejectCode.UNKNOWN_KIND, path, f"expected kind to be one of: {', '.join(KINDS)}")
    got = _GOT.match(msg)
    if got or msg == "Expected `str`":  # msgspec omits `got` for a tag of the wrong type
        return EventRejected(RejectCode.WRONG_TYPE, path, msg)
    if _REGEX.match(msg):
        quoted = msg[len("Expected `str` matching regex ") :]  # msgspec writes the pattern's repr()
        words = next((w for p, w in _PATTERN_WORDS.items() if repr(p) == quoted),
                     "expected a value of the documented form (docs/schemas.md)")  # fmt: skip
        return EventRejected(_FIELD_CODES.get(path, RejectCode.INVALID_VALUE), path, words)
    special = _FIELD_CODES.get(path)
    if special is not None:
        return EventRejected(special, path, msg)
    length = _LENGTH.match(msg)
    if length:
        is_str = length.group("type") == "str"
        if length.group("op") == "<=":
            code = RejectCode.TOO_LONG if is_str else RejectCode.TOO_MANY
        else:
            code = RejectCode.TOO_SHORT if is_str else RejectCode.TOO_FEW
        return EventRejected(code, path, msg)
    if _NUMBER.match(msg) or msg == "Number out of range":  # the latter: past float64, e.g. `1e400`
        return EventRejected(RejectCode.OUT_OF_RANGE, path, msg)
    return EventRejected(RejectCode.INVALID_VALUE, path, _strip_values(msg))


def _strip_values(text: str) -> str:
    # msgspec quotes offending values in a few messages; they may be user text, which never leaves in errors.
    return re.sub(r"'[^']*'", "'…'", text)
