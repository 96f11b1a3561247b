"""Events: what apps publish to `PREFSTREAM_EVENTS_TOPIC`.

Wire format: one JSON object (UTF-8) per message, message key = the UTF-8 bytes of `user_id`. The
object's `kind` field selects one of the Structs below (a msgspec tagged union). Fields this worker does
not know are ignored, so producers may add fields before the workers learn them.

Every event has `event_id` (idempotency key, unique per user), `user_id`, `ts` and optionally
`schema_version` (absent means 1), `source` (which app), `meta` (a small flat string map, carried
but never shown to the model) and `tenant` (version 2: a user id is unique per tenant; the key is then
`tenant/user_id`, see `schemas.keys`). Items are `{"text": ..., "item_id": ...}` objects, or a plain string as
shorthand for `{"text": ...}`.

The per-kind field table and an example of each kind are in `docs/schemas.md`; the JSON Schema in
`schemas/json/event.schema.json` is generated from these declarations (`python -m prefstream.schemas.generate`).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta

from prefstream.schemas import bounds as b

#: The version of the event contract this code writes and reads (2: `tenant` added). Events without
#: `schema_version` are 1.
EVENT_SCHEMA_VERSION: Final = 2
#: What an absent `schema_version` means.
DEFAULT_SCHEMA_VERSION: Final = 1

EventId: TypeAlias = Annotated[
    str, Meta(pattern=b.EVENT_ID_PATTERN, description="Idempotency key, unique per user; printable ASCII.")
]
UserId: TypeAlias = Annotated[
    str,
    Meta(
        pattern=b.USER_ID_PATTERN,
        description="1-128 characters from A-Z a-z 0-9 . _ - : @ + = ; the message key is its UTF-8 bytes.",
    ),
]
Tenant: TypeAlias = Annotated[
    str,
    Meta(
        pattern=b.TENANT_PATTERN,
        description="Which tenant (app, product or customer) the user belongs to; a user id is unique per "
        "tenant. The message key is then the UTF-8 bytes of `tenant/user_id`.",
    ),
]
TsString: TypeAlias = Annotated[str, Meta(pattern=b.TS_PATTERN, description="RFC 3339 date-time with offset.")]
TsMillis: TypeAlias = Annotated[
    int, Meta(ge=0, le=b.MAX_EPOCH_MS, description="Milliseconds since 1970-01-01T00:00:00Z.")
]
#: A JSON string is RFC 3339, a JSON integer is epoch milliseconds: the JSON type tells them apart.
Ts: TypeAlias = TsString | TsMillis

Text: TypeAlias = Annotated[str, Meta(min_length=1), b.TEXT]
OptionalText: TypeAlias = Annotated[str, b.TEXT] | None
Domain: TypeAlias = Annotated[
    str,
    Meta(
        pattern=b.DOMAIN_PATTERN,
        description='What kind of things the items are, as a plural noun ("news", "books", "movies"); '
        "it completes the stock query when there is no query.",
    ),
]
MetaMap: TypeAlias = Annotated[
    dict[
        Annotated[str, Meta(min_length=1, max_length=b.MAX_META_KEY_CHARS)],
        Annotated[str, Meta(max_length=b.MAX_META_VALUE_CHARS)],
    ],
    Meta(max_length=b.MAX_META_ENTRIES),
]
Source: TypeAlias = Annotated[str, Meta(min_length=1, max_length=b.MAX_SOURCE_CHARS)]
SchemaVersion: TypeAlias = Annotated[int, Meta(ge=1, le=2**31 - 1)]


class Item(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Something shown to or chosen by the user: its title and description as one text."""

    text: Text
    item_id: Annotated[str, Meta(min_length=1, max_length=b.MAX_ID_CHARS)] | None = None


#: An item, or a plain string as shorthand for `{"text": ...}`.
ItemRef: TypeAlias = Item | Text
Items: TypeAlias = Annotated[list[ItemRef], b.ITEMS]


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a conversation. `system` turns are carried but do not become evidence."""

    role: Literal["user", "assistant", "system"]
    content: Annotated[str, b.TEXT]


class _EventBase(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="kind"):
    event_id: EventId
    user_id: UserId
    ts: Ts
    schema_version: SchemaVersion = DEFAULT_SCHEMA_VERSION
    source: Source | None = None
    meta: MetaMap | None = None
    tenant: Tenant | None = None  # since version 2


class PairEvent(_EventBase, tag="pair"):
    """The user preferred `chosen` over `rejected` (response selection: AlignX, P-Soups, PersonaMem targets)."""

    chosen: ItemRef
    rejected: ItemRef
    query: OptionalText = None
    domain: Domain | None = None


class ImpressionEvent(_EventBase, tag="impression"):
    """`shown` items were displayed; `clicked` lists the 0-based indices into `shown` of those clicked (MIND)."""

    shown: Annotated[list[ItemRef], Meta(min_length=1), b.ITEMS]
    clicked: Annotated[
        list[Annotated[int, Meta(ge=0, le=2**31 - 1)]], b.ITEMS, Meta(extra_json_schema={"uniqueItems": True})
    ] = []
    query: OptionalText = None
    domain: Domain | None = None


class EngagementEvent(_EventBase, tag="engagement"):
    """A positive action on `item` (purchase, watch, like); `negatives` are known alternatives not taken."""

    item: ItemRef
    negatives: Items = []
    query: OptionalText = None
    domain: Domain | None = None


class RatingEvent(_EventBase, tag="rating"):
    """The user rated `item` with `score` on a scale from 0 to `scale` (5 stars: scale 5; thumbs: scale 1)."""

    item: ItemRef
    score: Annotated[float, Meta(ge=0, le=b.MAX_RATING_SCALE)]
    scale: Annotated[int, Meta(ge=1, le=b.MAX_RATING_SCALE)]
    query: OptionalText = None
    domain: Domain | None = None


class TextEvent(_EventBase, tag="text"):
    """Content the user wrote (review, post, comment); `context` is what it responds to, if anything."""

    text: Text
    context: OptionalText = None


class ConversationEvent(_EventBase, tag="conversation"):
    """A dialogue between the user and an assistant (PersonaMem / HiCUPID style)."""

    turns: Annotated[list[Turn], Meta(min_length=1), b.TURNS]


class ForgetEvent(_EventBase, tag="forget"):
    """Erase everything held about this user (right to erasure)."""


Event: TypeAlias = (
    PairEvent | ImpressionEvent | EngagementEvent | RatingEvent | TextEvent | ConversationEvent | ForgetEvent
)

EVENT_TYPES: Final[tuple[type[_EventBase], ...]] = (
    PairEvent,
    ImpressionEvent,
    EngagementEvent,
    RatingEvent,
    TextEvent,
    ConversationEvent,
    ForgetEvent,
)
#: kind tag -> Struct, in the order the docs list them.
KINDS: Final[dict[str, type[_EventBase]]] = {str(t.__struct_config__.tag): t for t in EVENT_TYPES}


def item_text(item: ItemRef) -> str:
    """The text of an item or of its string shorthand."""
    return item if isinstance(item, str) else item.text


def encode_event(event: Event) -> bytes:
    """The wire bytes of an event (for producers written in Python, tests and tools)."""
    return msgspec.json.encode(event)
