"""Errors of the wire contracts.

    PrefstreamError
    └── SchemaError                 a wire record does not meet its contract
        ├── EventRejected           an event message cannot be accepted (code, path, message)
        └── RecordDecodeError       a record prefstream itself published cannot be read back

`EventRejected.code` is one of `RejectCode`: a stable string that the dead-letter headers carry and
`docs/schemas.md` documents. Codes are never renamed or reused; new ones may be added.
"""

from __future__ import annotations

import enum

from prefstream.errors import PrefstreamError


class RejectCode(enum.StrEnum):
    """Why an event was rejected. The value is the stable code written to the dead-letter headers."""

    MISSING_VALUE = "missing_value"
    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    UNKNOWN_KIND = "unknown_kind"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    TOO_MANY = "too_many"
    TOO_FEW = "too_few"
    OUT_OF_RANGE = "out_of_range"
    INVALID_VALUE = "invalid_value"
    DUPLICATE_VALUE = "duplicate_value"
    INVALID_USER_ID = "invalid_user_id"
    INVALID_EVENT_ID = "invalid_event_id"
    INVALID_TS = "invalid_ts"
    KEY_MISMATCH = "key_mismatch"
    TOO_DEEP = "too_deep"
    INVALID_TENANT = "invalid_tenant"


#: One line per code, in the order of the checks; `docs/schemas.md` is checked against this table.
REJECT_CODE_DOCS: dict[RejectCode, str] = {
    RejectCode.MISSING_VALUE: "The message value is null (a tombstone); events topic records must carry an event.",
    RejectCode.TOO_LARGE: "The value is longer than `PREFSTREAM_MAX_EVENT_BYTES` bytes (checked before parsing).",
    RejectCode.INVALID_UTF8: "The value is not valid UTF-8 (checked on the raw bytes, before parsing).",
    RejectCode.INVALID_JSON: "The value is not one well-formed JSON document (syntax error, trailing data, "
    "NaN/Infinity, lone UTF-16 surrogate escape).",
    RejectCode.UNKNOWN_KIND: "`kind` is a string but not one of the kinds this worker knows.",
    RejectCode.MISSING_FIELD: "A required field (including `kind`) is absent.",
    RejectCode.WRONG_TYPE: "A field has the wrong JSON type (e.g. a number where a string is expected, a float "
    "where an integer is expected, `null` where a value is required), or the document is not an object.",
    RejectCode.TOO_LONG: "A string is longer than its bound (text fields: `PREFSTREAM_MAX_TEXT_CHARS` code points).",
    RejectCode.TOO_SHORT: "A string that must not be empty is empty.",
    RejectCode.TOO_MANY: "A list or map has more entries than its bound (`PREFSTREAM_MAX_ITEMS`, "
    "`PREFSTREAM_MAX_TURNS`, 16 `meta` entries).",
    RejectCode.TOO_FEW: "A list that must not be empty is empty (`shown`, `turns`).",
    RejectCode.OUT_OF_RANGE: "A number is outside its bounds (`score` above `scale`, a `clicked` index not "
    "pointing into `shown`, `schema_version` < 1, a number too large for a 64-bit float such as `1e400`, ...).",
    RejectCode.INVALID_VALUE: "A string is not one of the allowed values or does not match its pattern "
    "(`role`, `domain`), or `kind` is repeated with a different value.",
    RejectCode.DUPLICATE_VALUE: "A list that must hold distinct values repeats one (`clicked`).",
    RejectCode.INVALID_USER_ID: "`user_id` is empty, longer than 128 characters, or has a character outside "
    "`A-Z a-z 0-9 . _ - : @ + =`.",
    RejectCode.INVALID_EVENT_ID: "`event_id` is empty, longer than 128 characters, or not printable ASCII "
    "without spaces.",
    RejectCode.INVALID_TS: "`ts` is neither an RFC 3339 date-time with offset nor epoch milliseconds in range, "
    "or names a date that does not exist (e.g. 2025-02-30) or, once its offset is applied, an instant outside "
    "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z (e.g. 9999-12-31T23:59:59-01:00).",
    RejectCode.KEY_MISMATCH: "The caller passed a non-null message key that differs from the UTF-8 bytes of `user_id` "
    "(of `tenant/user_id` when the event has a tenant; the worker passes none and forwards mis-keyed events to "
    "their owner instead).",
    RejectCode.TOO_DEEP: "Arrays and objects nest more than 64 levels deep, anywhere in the value (checked on the "
    "raw bytes, before parsing; RFC 8259 lets parsers limit nesting).",
    RejectCode.INVALID_TENANT: "`tenant` is empty, longer than 64 characters, starts with `.`, `_` or `-`, or has a "
    "character outside `A-Z a-z 0-9 . _ -`.",
}


class SchemaError(PrefstreamError):
    """A wire record does not meet its contract."""


class EventRejected(SchemaError):
    """An event message cannot be accepted. Carries a stable `code`, the JSON `path` and a readable message.

    The message never quotes field values (they may be user text); it says what was expected and where.
    """

    def __init__(self, code: RejectCode | str, path: str, message: str) -> None:
        self.code = RejectCode(code)
        self.path = path
        self.message = message
        super().__init__(f"{self.code.value} at {path}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.path, self.message))


class RecordDecodeError(SchemaError):
    """A profile or failure record could not be decoded (a bug or a foreign writer on our topic)."""


class StreamCode(enum.StrEnum):
    """Why the worker dead-lettered a valid event (the stream's own codes, beside `RejectCode`). Stable."""

    BACKLOG_FULL = "backlog_full"
    TENANT_RATE_LIMITED = "tenant_rate_limited"
    TENANT_BACKLOG_FULL = "tenant_backlog_full"


STREAM_CODE_DOCS: dict[StreamCode, str] = {
    StreamCode.BACKLOG_FULL: "The user already has `PREFSTREAM_MAX_PENDING_EVENTS` events waiting (e.g. a parked "
    "user keeps buffering).",
    StreamCode.TENANT_RATE_LIMITED: "The event's tenant sent more than its events per second "
    "(`PREFSTREAM_TENANT_EVENTS_PER_S` or its override in `PREFSTREAM_TENANT_LIMITS`) to this worker.",
    StreamCode.TENANT_BACKLOG_FULL: "The event's tenant already has its most pending events "
    "(`PREFSTREAM_TENANT_MAX_PENDING_EVENTS` or its override) on this worker; its updates are behind, often "
    "because its model tokens per minute are used up.",
}
