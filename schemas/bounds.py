"""Bounds on event fields: the static ones, and markers for the ones operators configure.

Static bounds (identifier lengths, `meta` size, rating scale) are plain msgspec constraints: they are the
same everywhere and appear in the generated JSON Schema as written.

Configurable bounds (`LimitSettings`: text length, list lengths) cannot live in the Struct types, which
are built once at import. Fields subject to one carry a marker in their JSON Schema metadata
(`x-prefstream-limit`, naming the `LimitSettings` field). The decoder enforces the configured value after
msgspec has decoded (`check_limits`), and `schemas.generate` writes the DEFAULT value into the published
schema next to each marker. One marker table therefore drives both, so they cannot disagree.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from prefstream.settings import LimitSettings

LIMIT_KEY: Final = "x-prefstream-limit"

MAX_ID_CHARS: Final = 128
MAX_SOURCE_CHARS: Final = 64
MAX_META_ENTRIES: Final = 16
MAX_META_KEY_CHARS: Final = 64
MAX_META_VALUE_CHARS: Final = 256
MAX_RATING_SCALE: Final = 100
#: Epoch milliseconds of 9999-12-31T23:59:59.999Z, the largest instant RFC 3339 can write.
MAX_EPOCH_MS: Final = 253_402_300_799_999

#: user_id: letters, digits and `. _ - : @ + =`; safe in URLs paths, log fields and Kafka keys.
USER_ID_PATTERN: Final = r"^[A-Za-z0-9._:@+=-]{1,128}$"
#: event_id: printable ASCII without spaces (UUIDs, ULIDs, `app:123`), at most 128 characters.
EVENT_ID_PATTERN: Final = r"^[!-~]{1,128}$"
#: A tenant: 1-64 characters, letters, digits, `.`, `_` or `-`, not starting with `.`, `_` or `-`. No `/`: the
#: tenant and the user id are joined by one in the Kafka key. No `@`, `/` or `\\`: vLLM refuses those in a
#: `cache_salt`. A leading letter or digit leaves `_`-names free for metric labels (`_none`, `_other`).
TENANT_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: ts as a string: RFC 3339 date-time, `T`/`t`/space separator, fraction up to nanoseconds, offset required,
#: no leap second (`:60`). Plain regex syntax only (no named groups), so every language's validator reads it.
TS_PATTERN: Final = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,9})?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
#: domain: a plural noun phrase, lower case ("news", "books", "movies", "board games").
DOMAIN_PATTERN: Final = r"^[a-z][a-z ]{0,38}[a-z]$"

#: Marker metadata: the value names the `LimitSettings` field that bounds the marked string or list.
TEXT: Final = msgspec.Meta(extra_json_schema={LIMIT_KEY: "max_text_chars"})
ITEMS: Final = msgspec.Meta(extra_json_schema={LIMIT_KEY: "max_items"})
TURNS: Final = msgspec.Meta(extra_json_schema={LIMIT_KEY: "max_turns"})

#: How each limit is written into JSON Schema, keyed by the `LimitSettings` field it names.
SCHEMA_KEYWORD: Final = {"max_text_chars": "maxLength", "max_items": "maxItems", "max_turns": "maxItems"}


class LimitViolation(Exception):
    """A configured bound was exceeded (translated to `EventRejected` by the decoder)."""

    def __init__(self, limit: str, path: str, bound: int, actual: int) -> None:
        super().__init__(limit, path, bound, actual)
        self.limit = limit
        self.path = path
        self.bound = bound
        self.actual = actual


def iter_violations(value: Any, tp: type, limits: LimitSettings) -> Iterator[LimitViolation]:
    """Yield every configured-bound violation in a decoded value of type `tp`, in document order."""
    yield from _walk(_info(tp), value, "$", limits)


def check_limits(value: Any, tp: type, limits: LimitSettings) -> None:
    """Raise the first `LimitViolation` in `value`, if any."""
    for violation in iter_violations(value, tp, limits):
        raise violation


@functools.cache
def _info(tp: Any) -> mi.Type:
    return mi.type_info(tp)


def _walk(t: mi.Type, value: Any, path: str, limits: LimitSettings) -> Iterator[LimitViolation]:
    # The walk follows msgspec's own description of the type, so a field added with a marker is
    # enforced without touching this function.
    if isinstance(t, mi.Metadata):
        name = (t.extra_json_schema or {}).get(LIMIT_KEY)
        if name is not None and isinstance(value, (str, list, tuple)):
            bound = int(getattr(limits, name))
            if len(value) > bound:
                yield LimitViolation(name, path, bound, len(value))
        yield from _walk(t.type, value, path, limits)
    elif isinstance(t, mi.StructType):
        if not isinstance(value, t.cls):
            return
        for f in t.fields:
            yield from _walk(f.type, getattr(value, f.name), f"{path}.{f.encode_name}", limits)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            if _matches(member, value):
                yield from _walk(member, value, path, limits)
                return
    elif isinstance(t, (mi.ListType, mi.VarTupleType)) and isinstance(value, (list, tuple)):
        item_type = t.item_type
        for i, v in enumerate(value):
            yield from _walk(item_type, v, f"{path}[{i}]", limits)


def _matches(t: mi.Type, value: Any) -> bool:
    while isinstance(t, mi.Metadata):
        t = t.type
    if isinstance(t, mi.StructType):
        return isinstance(value, t.cls)
    if isinstance(t, mi.StrType):
        return isinstance(value, str)
    if isinstance(t, (mi.ListType, mi.VarTupleType)):
        return isinstance(value, (list, tuple))
    return False
