"""Typed builders for every event kind: keyword arguments in, the worker's own Structs out.

Each builder returns the `prefstream.schemas.events` Struct the worker decodes, with `ts` defaulting to now.
A Struct is not checked when it is built; `validate()` (which every producer calls before sending) checks
it with the worker's decoder, so a bad event fails in the app, never later in the dead-letter topic.

`event_id` is required: it is the idempotency key, so a retried or re-sent event must carry the same one
(an order line id, a message id). Items are `Item(text=..., item_id=...)` or a plain string.

`tenant=` (optional) names the tenant the user belongs to, when one deployment serves several apps or
customers: the event then carries `tenant` and `schema_version` 2, and its key is `tenant/user_id`
(`prefstream.schemas.keys`). Without it an event is exactly what it was before tenants existed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefstream.schemas.events import (
    ConversationEvent,
    EngagementEvent,
    EVENT_SCHEMA_VERSION,
    ForgetEvent,
    ImpressionEvent,
    Item,
    ItemRef,
    PairEvent,
    RatingEvent,
    TextEvent,
    Turn,
)

__all__ = [
    "Item",
    "Turn",
    "conversation",
    "engagement",
    "forget",
    "impression",
    "now_ms",
    "pair",
    "rating",
    "text",
]

Ts = str | int


def now_ms() -> int:
    """The current time as epoch milliseconds (what `ts` defaults to)."""
    return time.time_ns() // 1_000_000


def _common(ts: Ts | None, source: str | None, meta: dict[str, str] | None, tenant: str | None) -> dict[str, object]:
    common: dict[str, object] = {"ts": now_ms() if ts is None else ts}
    if tenant is not None:  # `tenant` is a version 2 field; without it the event stays version 1, byte for byte
        common["tenant"] = tenant
        common["schema_version"] = EVENT_SCHEMA_VERSION
    if source is not None:
        common["source"] = source
    if meta is not None:
        common["meta"] = meta
    return common


def pair(
    user_id: str, event_id: str, *, chosen: ItemRef, rejected: ItemRef, query: str | None = None,
    domain: str | None = None, ts: Ts | None = None, source: str | None = None, meta: dict[str, str] | None = None,
    tenant: str | None = None,
) -> PairEvent:  # fmt: skip
    """The user preferred `chosen` over `rejected` (an answer, a comment, a response)."""
    return PairEvent(user_id=user_id, event_id=event_id, chosen=chosen, rejected=rejected, query=query,
                     domain=domain, **_common(ts, source, meta, tenant))  # type: ignore[arg-type]  # fmt: skip


def impression(
    user_id: str, event_id: str, *, shown: Sequence[ItemRef], clicked: Sequence[int] = (), query: str | None = None,
    domain: str | None = None, ts: Ts | None = None, source: str | None = None, meta: dict[str, str] | None = None,
    tenant: str | None = None,
) -> ImpressionEvent:  # fmt: skip
    """`shown` items were displayed; `clicked` are the 0-based indices into `shown` of those clicked."""
    return ImpressionEvent(user_id=user_id, event_id=event_id, shown=list(shown), clicked=list(clicked), query=query,
                           domain=domain, **_common(ts, source, meta, tenant))  # type: ignore[arg-type]  # fmt: skip


def engagement(
    user_id: str, event_id: str, *, item: ItemRef, negatives: Sequence[ItemRef] = (), query: str | None = None,
    domain: str | None = None, ts: Ts | None = None, source: str | None = None, meta: dict[str, str] | None = None,
    tenant: str | None = None,
) -> EngagementEvent:  # fmt: skip
    """A positive action on `item` (purchase, watch, like); `negatives` are known alternatives not taken."""
    return EngagementEvent(user_id=user_id, event_id=event_id, item=item, negatives=list(negatives), query=query,
                           domain=domain, **_common(ts, source, meta, tenant))  # type: ignore[arg-type]  # fmt: skip


def rating(
    user_id: str, event_id: str, *, item: ItemRef, score: float, scale: int, query: str | None = None,
    domain: str | None = None, ts: Ts | None = None, source: str | None = None, meta: dict[str, str] | None = None,
    tenant: str | None = None,
) -> RatingEvent:  # fmt: skip
    """The user rated `item` with `score` from 0 to `scale` (5 stars: scale 5; thumbs: scale 1)."""
    return RatingEvent(user_id=user_id, event_id=event_id, item=item, score=score, scale=scale, query=query,
                       domain=domain, **_common(ts, source, meta, tenant))  # type: ignore[arg-type]  # fmt: skip


def text(
    user_id: str, event_id: str, *, text: str, context: str | None = None,
    ts: Ts | None = None, source: str | None = None, meta: dict[str, str] | None = None,
    tenant: str | None = None,
) -> TextEvent:  # fmt: skip
    """Content the user wrote (review, post, comment); `context` is what it responds to."""
    return TextEvent(user_id=user_id, event_id=event_id, text=text, context=context,
                     **_common(ts, source, meta, tenant))  # type: ignore[arg-type]  # fmt: skip


def conversation(
    user_id: str, event_id: str, *, turns: Sequence[Turn | tuple[str, str]],
    ts: Ts | None = None, source: str | None = None, meta: dict[str, str] | None = None,
    tenant: str | None = None,
) -> ConversationEvent:  # fmt: skip
    """A dialogue with an assistant; a turn is a `Turn` or a `(role, content)` pair."""
    built = [t if isinstance(t, Turn) else Turn(role=t[0], content=t[1]) for t in turns]  # type: ignore[arg-type]
    return ConversationEvent(user_id=user_id, event_id=event_id, turns=built,
                             **_common(ts, source, meta, tenant))  # type: ignore[arg-type]  # fmt: skip


def forget(
    user_id: str, event_id: str, *, ts: Ts | None = None, source: str | None = None, tenant: str | None = None,
) -> ForgetEvent:
    """Erase everything held about this user (right to erasure); readers then see the profile disappear."""
    common = _common(ts, source, None, tenant)
    return ForgetEvent(user_id=user_id, event_id=event_id, **common)  # type: ignore[arg-type]
