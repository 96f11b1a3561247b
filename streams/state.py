"""Per-user state and the pure transitions between states.

Three kinds of value, kept apart by what they may hold and how often they change:

- `Meta`          content-free bookkeeping that survives a forget: epoch, last published version, the
                  hashed ids of recently accepted events (dedupe), failure counters.
- `Pending`       the evidence of events not yet folded into the profile (user text).
- `ProfileState`  the current summary (user text) and its counters.

`streams.store` keeps them in the worker's one state table. Every function here is pure: it takes the
current state and returns the next one. The agent (`streams.ingest`, `streams.apply`) reads the
state, calls these, and writes the results back inside the processing of one source message.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

import msgspec

from prefstream.schemas.evidence import Evidence
from prefstream.streams.policy import UserView

#: A remembered event: 8 bytes of hash, then the accept time in whole seconds (big-endian uint32).
_SEEN = struct.Struct(">8sI")
SEEN_SIZE: Final = _SEEN.size


class PendingEvent(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One accepted event waiting to be folded into the profile."""

    event_id: str
    evidence: Evidence
    ts_ms: int  # the event's own `ts`
    produced_ms: int  # the Kafka timestamp of the original message: where event-to-profile latency starts
    accepted_ms: int  # when this worker accepted it
    tokens: int  # evidence tokens (estimate for the flush trigger; the exact count is taken at flush)
    backfill: bool = False  # came from a history import (`prefstream backfill`), not the live events topic


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """A user's events not yet in the profile, in the order they were accepted (`in_event_order` gives
    the order an update reads them in)."""

    epoch: int
    events: tuple[PendingEvent, ...] = ()


class Meta(msgspec.Struct, frozen=True, kw_only=True):
    """Content-free per-user bookkeeping: the only state kept after a forget."""

    epoch: int = 1
    version: int = 0  # version of the current epoch's profile (0: none yet)
    summary_tokens: int = 0  # prompt tokens the current summary takes (flush trigger estimate)
    seen: bytes = b""  # remembered events, SEEN_SIZE bytes each, oldest first
    last_update_ms: int = 0  # when the last update was applied (min-interval cost control)
    attempts: int = 0  # failed attempts of the current batch
    next_retry_ms: int = 0
    batch_cap: int = 0  # 0: no cap; set when degrading after failures
    parked: bool = False
    last_failure: str = ""
    # The `ts` of the user's last forget (None: never forgotten): events that happened before it are not
    # applied to the new epoch. Not 0 for "never": `ts` may be before 1970 (negative epoch milliseconds).
    forget_ts_ms: int | None = None
    # While a backfill of this user is arriving: a partial batch waits until this time (0: no backfill open).
    backfill_hold_ms: int = 0


class ProfileState(msgspec.Struct, frozen=True, kw_only=True):
    """The current summary of one epoch and its provenance."""

    epoch: int
    version: int
    summary: str
    events_applied: int
    updated_ms: int
    last_event_ts_ms: int
    last_event_id: str
    model: str
    prompt_version: str
    backend: str
    update_events: int
    update_triples: int
    prompt_tokens: int
    completion_tokens: int


class UpdateEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One applied update, kept with the profile for the inspector and the audit record (`schemas.updates`).

    It is the update record's whole content: a replayed result re-publishes exactly these values."""

    request_id: str
    epoch: int
    version: int
    summary: str  # user text: erased with the profile
    event_ids: tuple[str, ...]
    events_applied: int
    triples: int
    first_event_ts_ms: int
    last_event_ts_ms: int
    prompt_tokens: int
    completion_tokens: int
    model: str
    prompt_version: str
    backend: str
    attempt: int
    degraded: bool
    queued_ms: int  # the oldest folded event's accept time
    requested_ms: int
    finished_ms: int
    applied_ms: int


# --- dedupe ---------------------------------------------------------------------------------------


def seen_key(user_id: str, event_id: str) -> bytes:
    """8 bytes identifying (user_id, event_id) without holding either: what dedupe remembers."""
    return hashlib.blake2b(f"{user_id}\x00{event_id}".encode(), digest_size=8).digest()


def has_seen(meta: Meta, key: bytes) -> bool:
    seen = meta.seen
    i = seen.find(key)  # a search in C; a hit counts only at the start of an entry
    while i != -1:
        if i % SEEN_SIZE == 0:
            return True
        i = seen.find(key, i + 1)
    return False


def remember(meta: Meta, key: bytes, now_ms: int, horizon_s: float, max_ids: int) -> Meta:
    """Add `key` to the dedupe memory, dropping entries older than the horizon and the oldest beyond `max_ids`."""
    now_s = now_ms // 1000
    cutoff = now_s - int(horizon_s)
    seen = meta.seen
    if any(t < cutoff for _, t in _SEEN.iter_unpack(seen)):  # rare: only then are entries copied one by one
        seen = b"".join(seen[i : i + SEEN_SIZE] for i in range(0, len(seen), SEEN_SIZE)
                        if _SEEN.unpack_from(seen, i)[1] >= cutoff)  # fmt: skip
    seen += _SEEN.pack(key, now_s & 0xFFFFFFFF)
    if len(seen) > max_ids * SEEN_SIZE:
        seen = seen[len(seen) - max_ids * SEEN_SIZE :]
    return msgspec.structs.replace(meta, seen=seen)


# --- transitions on events ------------------------------------------------------------------------


def remember_many(meta: Meta, keys: list[bytes], now_ms: int, horizon_s: float, max_ids: int) -> Meta:
    """`remember` for many keys at once (a backfill chunk): one pass instead of one per key."""
    now_s = now_ms // 1000
    cutoff = now_s - int(horizon_s)
    kept = [
        meta.seen[i : i + SEEN_SIZE]
        for i in range(0, len(meta.seen), SEEN_SIZE)
        if _SEEN.unpack_from(meta.seen, i)[1] >= cutoff
    ]
    kept += [_SEEN.pack(k, now_s & 0xFFFFFFFF) for k in keys]
    if len(kept) > max_ids:
        kept = kept[len(kept) - max_ids :]
    return msgspec.structs.replace(meta, seen=b"".join(kept))


def seen_set(meta: Meta) -> set[bytes]:
    """The remembered keys, for many lookups at once."""
    return {meta.seen[i : i + 8] for i in range(0, len(meta.seen), SEEN_SIZE)}


def accept_many(pending: Pending | None, meta: Meta, events: list[PendingEvent]) -> Pending | None:
    """`accept` for many events at once (one new tuple, not one per event)."""
    if not events:
        return pending
    if pending is None or pending.epoch != meta.epoch:
        return Pending(epoch=meta.epoch, events=tuple(events))
    return Pending(epoch=pending.epoch, events=(*pending.events, *events))


def accept(pending: Pending | None, meta: Meta, event: PendingEvent) -> Pending:
    """Append an accepted event to the user's pending evidence (a fresh buffer in a new epoch)."""
    if pending is None or pending.epoch != meta.epoch:
        return Pending(epoch=meta.epoch, events=(event,))
    return Pending(epoch=pending.epoch, events=(*pending.events, event))


def forget(meta: Meta, ts_ms: int) -> Meta:
    """The meta of a forgotten user: next epoch, no profile, no failures; dedupe memory kept, and the
    forget's event time (the latest of all forgets), before which events are not applied any more."""
    latest = ts_ms if meta.forget_ts_ms is None else max(meta.forget_ts_ms, ts_ms)
    return Meta(epoch=meta.epoch + 1, version=0, seen=meta.seen, forget_ts_ms=latest)


def before_forget(meta: Meta, ts_ms: int) -> bool:
    """Whether an event that happened at `ts_ms` predates the user's last forget (it is then not applied:
    the forget erased what happened before it, and a late or backfilled event must not bring it back)."""
    return meta.forget_ts_ms is not None and ts_ms < meta.forget_ts_ms


def in_event_order(events: tuple[PendingEvent, ...]) -> tuple[PendingEvent, ...]:
    """Pending events in the order an update reads them: by event time, ties by arrival (accept order).

    Events of one user that came through different producers or paths (a backfill, a late mobile batch)
    reach the worker out of order; within an update the model reads them in the order they happened."""
    order = sorted(range(len(events)), key=lambda i: (events[i].ts_ms, i))
    return tuple(events[i] for i in order)


def batch_of(pending: Pending | None, event_ids: tuple[str, ...]) -> tuple[PendingEvent, ...]:
    """The pending events named by `event_ids`, in that order (those still pending)."""
    by_id = {e.event_id: e for e in (pending.events if pending else ())}
    return tuple(by_id[i] for i in event_ids if i in by_id)


def view_of(partition: int, meta: Meta, pending: Pending | None) -> UserView | None:
    """The policy's view of a user, or None when nothing is pending in the current epoch."""
    if pending is None or pending.epoch != meta.epoch or not pending.events:
        return None
    events = pending.events
    return UserView(
        partition=partition,
        epoch=meta.epoch,
        count=len(events),
        tokens=meta.summary_tokens + sum(e.tokens for e in events),
        oldest_ms=events[0].accepted_ms,
        newest_ms=events[-1].accepted_ms,
        last_update_ms=meta.last_update_ms,
        next_retry_ms=meta.next_retry_ms,
        parked=meta.parked,
        batch_cap=meta.batch_cap,
        backfill=any(e.backfill for e in events),
        hold_until_ms=meta.backfill_hold_ms,
    )


# --- transitions on results -----------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """An accepted result: what to write and publish."""

    meta: Meta
    pending: Pending | None  # None: delete the key
    profile: ProfileState
    applied: tuple[PendingEvent, ...]


@dataclass(frozen=True)
class Rejected:
    """A result that does not build on the stored state (compare-and-set lost): change nothing."""

    reason: str  # "epoch" (user forgotten since), "version" (another result won), "events" (batch gone)


def check_base(meta: Meta, pending: Pending | None, epoch: int, base_version: int, event_ids: tuple[str, ...]) -> Rejected | None:
    """Compare-and-set guard: a result applies only to the (epoch, version) it was computed from."""
    if epoch != meta.epoch:
        return Rejected("epoch")
    if base_version != meta.version:
        return Rejected("version")
    # Only the apply step removes pending events and it always bumps the version, so with the version
    # unchanged every event of the batch must still be pending; anything else is a bug worth refusing.
    # (Not necessarily the head: an event that happened earlier may have arrived since the request.)
    if len(batch_of(pending, event_ids)) != len(event_ids):
        return Rejected("events")
    return None


def apply_success(
    meta: Meta,
    pending: Pending | None,
    profile: ProfileState | None,
    *,
    epoch: int,
    base_version: int,
    event_ids: tuple[str, ...],
    summary: str,
    summary_tokens: int,
    now_ms: int,
    model: str,
    prompt_version: str,
    backend: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> Applied | Rejected:
    """Fold a successful update into the state, if it builds on the stored (epoch, version)."""
    guard = check_base(meta, pending, epoch, base_version, event_ids)
    if guard is not None:
        return guard
    assert pending is not None  # check_base guarantees the batch is there
    applied = batch_of(pending, event_ids)
    taken = set(event_ids)
    rest = tuple(e for e in pending.events if e.event_id not in taken)
    before = 0
    if profile is not None and profile.epoch == epoch:
        # The profile is written before the user record (`streams.apply`); after a crash between the two
        # the profile may already hold this very update: count from the profile it replaced.
        half_applied = profile.version == base_version + 1
        before = profile.events_applied - profile.update_events if half_applied else profile.events_applied
    last = max(applied, key=lambda e: e.ts_ms) if applied else None
    new_profile = ProfileState(
        epoch=epoch,
        version=base_version + 1,
        summary=summary,
        events_applied=before + len(applied),
        updated_ms=now_ms,
        last_event_ts_ms=last.ts_ms if last else (profile.last_event_ts_ms if profile else 0),
        last_event_id=applied[-1].event_id if applied else "",
        model=model,
        prompt_version=prompt_version,
        backend=backend,
        update_events=len(applied),
        update_triples=sum(len(e.evidence.triples) for e in applied),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    new_meta = msgspec.structs.replace(
        meta,
        version=base_version + 1,
        summary_tokens=summary_tokens,
        last_update_ms=now_ms,
        attempts=0,
        next_retry_ms=0,
        batch_cap=0,
        parked=False,
        last_failure="",
    )
    return Applied(
        meta=new_meta,
        pending=Pending(epoch=epoch, events=rest) if rest else None,
        profile=new_profile,
        applied=applied,
    )


@dataclass(frozen=True)
class RetryPlan:
    """How failures escalate: retries as-is, then degraded (halved batch), then parked."""

    retry_limit: int
    degraded_attempts: int
    backoff_s: float
    backoff_max_s: float

    def backoff_ms(self, attempts: int) -> int:
        return int(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempts - 1)) * 1000)


def apply_failure(
    meta: Meta,
    pending: Pending | None,
    *,
    epoch: int,
    base_version: int,
    event_ids: tuple[str, ...],
    reason: str,
    over_budget: bool,
    now_ms: int,
    plan: RetryPlan,
) -> Meta | Rejected:
    """Count a failed update: back off, degrade (halve the batch) after `retry_limit`, park at the end."""
    guard = check_base(meta, pending, epoch, base_version, event_ids)
    if guard is not None:
        return guard
    attempts = meta.attempts + 1
    cap = meta.batch_cap
    if over_budget or (attempts > plan.retry_limit and not cap):
        # A smaller batch is the one change that can make the next attempt different: halve once when
        # degrading, and again on every over-budget failure.
        cap = max(1, len(event_ids) // 2)
    parked = attempts >= 1 + plan.retry_limit + plan.degraded_attempts
    return msgspec.structs.replace(
        meta,
        attempts=attempts,
        next_retry_ms=now_ms + plan.backoff_ms(attempts),
        batch_cap=cap,
        parked=parked,
        last_failure=reason,
    )


def degraded(meta: Meta, plan: RetryPlan) -> bool:
    """Whether the next request of this user is a degraded one (smaller reasoning budget)."""
    return meta.attempts > plan.retry_limit


def redrive(meta: Meta) -> Meta:
    """Unpark a user: the next update starts a fresh series of attempts at full size."""
    return msgspec.structs.replace(meta, parked=False, attempts=0, next_retry_ms=0, batch_cap=0)


# --- history ---------------------------------------------------------------------------------------


def push_history(history: tuple[UpdateEntry, ...], entry: UpdateEntry, keep: int) -> tuple[UpdateEntry, ...]:
    """The last `keep` updates of `entry`'s epoch, oldest first, with `entry` last. An entry of the same
    version is replaced: a result applied again after a crash between the profile write and the user write."""
    kept = [e for e in history if e.epoch == entry.epoch and e.version < entry.version]
    return (*kept, entry)[-keep:]
