"""What the read API says about a user beyond the profile: pending evidence, failures, parking.

A user whose updates keep failing is parked with its events kept; without this, `GET /profiles/{id}`
would only say "no profile" while events wait. Everything here is content-free: counts, codes, times.
"""

from __future__ import annotations

import msgspec

from prefstream.schemas.timefmt import ms_to_rfc3339
from prefstream.streams.store import UserRecord
from prefstream.streams.state import ProfileState

__all__ = ["ParkedList", "UserState", "user_state"]


class UserState(msgspec.Struct, frozen=True, kw_only=True):
    """One user's state on the worker that owns it."""

    user_id: str
    partition: int
    known: bool  # the worker holds a record or a profile of this user
    epoch: int
    version: int  # the current profile's version (0: no profile yet in this epoch)
    pending_events: int  # accepted events not yet in the profile
    oldest_pending_at: str | None  # when the oldest of them was accepted (RFC 3339 UTC)
    updating: bool  # a model update is in flight
    failing: bool  # the current batch has failed at least once
    attempts: int  # failed attempts of the current batch
    last_failure: str  # reason code of the last failure ("" when none)
    next_retry_at: str | None  # when a failing, unparked user is retried
    parked: bool  # updates stopped after repeated failures; `prefstream redrive` retries them


class ParkedList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /parked`: the parked users of every worker that answered."""

    parked: list[UserState]
    workers: int  # workers that answered
    unreachable: list[str] = msgspec.field(default_factory=list)  # URLs of workers that did not


def user_state(user_id: str, partition: int, record: UserRecord, profile: ProfileState | None, updating: bool,
               *, exists: bool) -> UserState:  # fmt: skip
    """Pure: the state the read API reports, from the stored records."""
    meta, pending = record.meta, record.pending
    events = pending.events if pending is not None and pending.epoch == meta.epoch else ()
    failing = meta.attempts > 0
    return UserState(
        user_id=user_id,
        partition=partition,
        known=exists or profile is not None,
        epoch=meta.epoch,
        version=meta.version,
        pending_events=len(events),
        oldest_pending_at=ms_to_rfc3339(min(e.accepted_ms for e in events)) if events else None,
        updating=updating,
        failing=failing,
        attempts=meta.attempts,
        last_failure=meta.last_failure,
        next_retry_at=ms_to_rfc3339(meta.next_retry_ms) if failing and not meta.parked and meta.next_retry_ms else None,
        parked=meta.parked,
    )
