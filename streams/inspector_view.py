"""What the profile inspector shows of one user, built from the stored state (pure functions, no I/O).

`user_view` turns a user's stored records (`streams.store`) and the scheduler's in-flight flag into an
`InspectorView`: the current profile, the kept versions newest first, each with a word-level diff against
the version before it, the pending events with their evidence, and the failure and park state.
"""

from __future__ import annotations

import difflib
import re
from typing import Final, Literal

import msgspec

from prefstream.schemas.profiles import Profile
from prefstream.schemas.timefmt import ms_to_rfc3339
from prefstream.streams import state as st

__all__ = ["DiffSegment", "InspectorView", "encode_view", "user_view", "word_diff"]

#: A word or a run of whitespace: diffing these keeps the summary's own spacing and line breaks.
_TOKEN: Final = re.compile(r"\S+|\s+")


class DiffSegment(msgspec.Struct, frozen=True, array_like=True):
    """A run of text that both versions share (`=`), only the older has (`-`) or only the newer has (`+`)."""

    op: Literal["=", "-", "+"]
    text: str


class Failing(msgspec.Struct, frozen=True, kw_only=True):
    """The failure series of the user's current batch (attempts 0: none)."""

    attempts: int
    last_failure: str
    next_retry_at: str  # "" when no retry is scheduled
    batch_cap: int  # 0: full batches; else the halved size of a degraded retry
    parked: bool


class UserState(msgspec.Struct, frozen=True, kw_only=True):
    epoch: int
    version: int  # 0: no profile in this epoch
    last_update_at: str
    in_flight: bool  # a model update of this user is running or awaiting apply on this worker
    failing: Failing


class Version(msgspec.Struct, frozen=True, kw_only=True):
    """One kept update and what it changed."""

    version: int
    summary: str
    diff: list[DiffSegment] | None  # against the previous version; None when that one is no longer kept
    event_ids: list[str]
    events_applied: int
    triples: int
    prompt_tokens: int
    completion_tokens: int
    model: str
    prompt_version: str
    backend: str
    attempt: int
    degraded: bool
    request_id: str
    first_event_ts: str
    last_event_ts: str
    queued_at: str
    requested_at: str
    finished_at: str
    applied_at: str
    wait_s: float
    model_s: float
    apply_s: float


class TripleView(msgspec.Struct, frozen=True, kw_only=True):
    query: str
    chosen: str
    rejected: str


class PendingView(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted event not yet in the profile, as the model will see it."""

    event_id: str
    ts: str
    accepted_at: str
    tokens: int
    triples: list[TripleView]


class InspectorView(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the inspector page shows of one user."""

    user_id: str
    partition: int
    served_by: str
    state: UserState
    profile: Profile | None
    versions: list[Version]  # newest first
    versions_kept: int  # PREFSTREAM_HISTORY_VERSIONS
    pending: list[PendingView]


def word_diff(old: str, new: str) -> list[DiffSegment]:
    """Word-level diff of two summaries: shared, removed and added runs, in reading order."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    out: list[DiffSegment] = []

    def emit(op: Literal["=", "-", "+"], tokens: list[str]) -> None:
        if not tokens:
            return
        text = "".join(tokens)
        if out and out[-1].op == op:
            out[-1] = DiffSegment(op, out[-1].text + text)
        else:
            out.append(DiffSegment(op, text))

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            emit("=", a[i1:i2])
        else:  # replace, delete, insert: the old words go, the new ones come
            emit("-", a[i1:i2])
            emit("+", b[j1:j2])
    return out


def _seconds(start_ms: int, end_ms: int) -> float:
    return round(max(0, end_ms - start_ms) / 1000, 3)


def _version(entry: st.UpdateEntry, previous: st.UpdateEntry | None) -> Version:
    if entry.version == 1:
        diff: list[DiffSegment] | None = word_diff("", entry.summary)
    elif previous is not None and previous.version == entry.version - 1:
        diff = word_diff(previous.summary, entry.summary)
    else:
        diff = None
    return Version(
        version=entry.version, summary=entry.summary, diff=diff, event_ids=list(entry.event_ids),
        events_applied=entry.events_applied, triples=entry.triples, prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens, model=entry.model, prompt_version=entry.prompt_version,
        backend=entry.backend, attempt=entry.attempt, degraded=entry.degraded, request_id=entry.request_id,
        first_event_ts=ms_to_rfc3339(entry.first_event_ts_ms), last_event_ts=ms_to_rfc3339(entry.last_event_ts_ms),
        queued_at=ms_to_rfc3339(entry.queued_ms), requested_at=ms_to_rfc3339(entry.requested_ms),
        finished_at=ms_to_rfc3339(entry.finished_ms), applied_at=ms_to_rfc3339(entry.applied_ms),
        wait_s=_seconds(entry.queued_ms, entry.requested_ms), model_s=_seconds(entry.requested_ms, entry.finished_ms),
        apply_s=_seconds(entry.finished_ms, entry.applied_ms),
    )  # fmt: skip


def _time(ms: int) -> str:
    return ms_to_rfc3339(ms) if ms else ""


def user_view(
    user_id: str,
    *,
    partition: int,
    served_by: str,
    meta: st.Meta,
    pending: st.Pending | None,
    profile: Profile | None,
    history: tuple[st.UpdateEntry, ...],
    versions_kept: int,
    in_flight: bool,
) -> InspectorView:
    """The inspector's view of one user. `profile` is the published form of the stored one (None: none)."""
    events = pending.events if pending is not None and pending.epoch == meta.epoch else ()
    kept = [e for e in history if e.epoch == meta.epoch]
    versions = [_version(e, kept[i - 1] if i else None) for i, e in enumerate(kept)]
    failing = Failing(attempts=meta.attempts, last_failure=meta.last_failure, next_retry_at=_time(meta.next_retry_ms),
                      batch_cap=meta.batch_cap, parked=meta.parked)  # fmt: skip
    return InspectorView(
        user_id=user_id, partition=partition, served_by=served_by,
        state=UserState(epoch=meta.epoch, version=meta.version, last_update_at=_time(meta.last_update_ms),
                        in_flight=in_flight, failing=failing),
        profile=profile if profile is not None and profile.epoch == meta.epoch else None,
        versions=versions[::-1], versions_kept=versions_kept,
        pending=[
            PendingView(event_id=e.event_id, ts=ms_to_rfc3339(e.ts_ms), accepted_at=ms_to_rfc3339(e.accepted_ms),
                        tokens=e.tokens, triples=[TripleView(query=t.query, chosen=t.chosen, rejected=t.rejected)
                                                  for t in e.evidence.triples])
            for e in events
        ],
    )  # fmt: skip


_ENCODER: Final = msgspec.json.Encoder()


def encode_view(view: InspectorView) -> bytes:
    return _ENCODER.encode(view)
