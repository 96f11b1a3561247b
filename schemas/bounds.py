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
from collections.abc import Callable, Iterator
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
    plan = _plan_of(tp)
    if plan is not None:
        yield from plan(value, "$", limits)


def check_limits(value: Any, tp: type, limits: LimitSettings) -> None:
    """Raise the first `LimitViolation` in `value`, if any."""
    for violation in iter_violations(value, tp, limits):
        raise violation


#: Checks one decoded value at one path: yields its violations (None: nothing under this type is marked).
Plan = Callable[[Any, str, LimitSettings], Iterator[LimitViolation]]


@functools.cache
def _plan_of(tp: Any) -> Plan | None:
    return _plan(mi.type_info(tp))


def _plan(t: mi.Type) -> Plan | None:
    """Compile msgspec's description of a type into a check that visits only the marked fields (every event
    is checked on the hot path: a walk of every field cost more than msgspec's whole decode). The checks
    and their order are those of a walk over every field, so a field added with a marker is enforced
    without touching this function."""
    if isinstance(t, mi.Metadata):
        name = (t.extra_json_schema or {}).get(LIMIT_KEY)
        inner = _plan(t.type)
        if name is None:
            return inner
        return _bounded(name, inner)
    if isinstance(t, mi.StructType):
        fields = [(f.name, "." + f.encode_name, p) for f in t.fields if (p := _plan(f.type)) is not None]
        return _struct(t.cls, fields) if fields else None
    if isinstance(t, mi.UnionType):
        members = [(m, _plan(m)) for m in t.types]
        if all(p is None for _, p in members):
            return None
        return _union(members)
    if isinstance(t, (mi.ListType, mi.VarTupleType)):
        item = _plan(t.item_type)
        return None if item is None else _sequence(item)
    return None


def _bounded(name: str, inner: Plan | None) -> Plan:
    def check(value: Any, path: str, limits: LimitSettings) -> Iterator[LimitViolation]:
        if isinstance(value, (str, list, tuple)):
            bound = int(getattr(limits, name))
            if len(value) > bound:
                yield LimitViolation(name, path, bound, len(value))
        if inner is not None:
            yield from inner(value, path, limits)

    return check


def _struct(cls: type, fields: list[tuple[str, str, Plan]]) -> Plan:
    def check(value: Any, path: str, limits: LimitSettings) -> Iterator[LimitViolation]:
        if isinstance(value, cls):
            for name, suffix, plan in fields:
                yield from plan(getattr(value, name), path + suffix, limits)

    return check


def _union(members: list[tuple[mi.Type, Plan | None]]) -> Plan:
    by_class: dict[type, Plan | None] = {}  # a Struct member is found by its exact class first (the events' tagged union)
    for member, plan in members:
        inner = member
        while isinstance(inner, mi.Metadata):
            inner = inner.type
        if isinstance(inner, mi.StructType):
            by_class.setdefault(inner.cls, plan)
    if any(a is not b and issubclass(a, b) for a in by_class for b in by_class):
        by_class = {}  # a member subclasses another: only the in-order scan finds the same member

    def check(value: Any, path: str, limits: LimitSettings) -> Iterator[LimitViolation]:
        cls = type(value)
        if cls in by_class:
            plan = by_class[cls]
            if plan is not None:
                yield from plan(value, path, limits)
            return
        for member, plan in members:
            if _matches(member, value):
                if plan is not None:
                    yield from plan(value, path, limits)
                return

    return check


def _sequence(item: Plan) -> Plan:
    def check(value: Any, path: str, limits: LimitSettings) -> Iterator[LimitViolation]:
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                yield from item(v, f"{path}[{i}]", limits)

    return check


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
