"""Update records: the audit trail on `PREFSTREAM_UPDATES_TOPIC` (key = UTF-8 `user_id`, the user's partition).

One record per applied update, published right after the profile it wrote. A record names the events the
update folded, its token counts, its timings and the model and prompt that wrote it; it holds user text
(the new summary) only when the operator sets `PREFSTREAM_UPDATES_INCLUDE_SUMMARY`. Like profiles, a
record may be published twice after a worker crash or a partition move (the same bytes again): consumers
dedupe on `(user_id, epoch, version)`. Readers must ignore fields they do not know.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from prefstream.schemas import bounds as b
from prefstream.schemas.errors import RecordDecodeError
from prefstream.schemas.events import Tenant, UserId

#: Version of the update record contract written by this code (2: `tenant` added); a record without a tenant
#: is still written as version 1 (`schemas.profiles.record_version`).
UPDATE_SCHEMA_VERSION: Final = 2

Rfc3339Utc = Annotated[str, Meta(description="RFC 3339 UTC with milliseconds, e.g. 2026-01-31T08:15:00.250Z")]
EventId = Annotated[str, Meta(max_length=b.MAX_ID_CHARS)]


class UpdateRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One applied model update: which events it folded, what it cost, how long it took, who wrote it."""

    schema_version: Annotated[int, Meta(ge=1, description="Version of this record's contract: 1, or 2 when it has a `tenant`.")]
    user_id: UserId
    epoch: Annotated[int, Meta(ge=1, description="The user's epoch (+1 at every forget).")]
    version: Annotated[int, Meta(ge=1, description="The profile version this update wrote (its base + 1).")]
    request_id: Annotated[str, Meta(description="Id of the model request (also in the worker's `update_applied` log line).")]
    event_ids: Annotated[list[EventId], Meta(description="event_id of every event folded in, in the order folded.")]
    events_applied: Annotated[
        int, Meta(ge=0, description="Distinct events in the profile after this update, this epoch (cumulative).")
    ]
    triples: Annotated[int, Meta(ge=0, description="Evidence triples the model saw in this update.")]
    first_event_ts: Annotated[str, Meta(description="Earliest `ts` of the folded events, RFC 3339 UTC.")]
    last_event_ts: Annotated[str, Meta(description="Latest `ts` of the folded events, RFC 3339 UTC.")]
    prompt_tokens: Annotated[int, Meta(ge=0, description="Prompt tokens of the model call (0 when unknown).")]
    completion_tokens: Annotated[int, Meta(ge=0, description="Generated tokens of the model call (0 when unknown).")]
    summary_chars: Annotated[int, Meta(ge=0, description="Length of the new summary, in characters.")]
    model: Annotated[str, Meta(description="Model id that wrote the summary.")]
    prompt_version: Annotated[str, Meta(description="Identifies the prompt template the model was given.")]
    backend: Annotated[str, Meta(description="Model backend: vllm, openai, extractive or ledger.")]
    attempt: Annotated[int, Meta(ge=1, description="Model calls for this batch, this one included (1: first try).")]
    degraded: Annotated[bool, Meta(description="A retry after failures, with a halved batch and reasoning budget.")]
    queued_at: Annotated[str, Meta(description="When the oldest folded event was accepted by the worker, RFC 3339 UTC.")]
    requested_at: Annotated[str, Meta(description="When the model call started, RFC 3339 UTC.")]
    finished_at: Annotated[str, Meta(description="When the model call ended, RFC 3339 UTC.")]
    applied_at: Annotated[str, Meta(description="When the new profile was stored and published, RFC 3339 UTC.")]
    summary: Annotated[
        str, Meta(description="The new summary: empty unless the operator sets PREFSTREAM_UPDATES_INCLUDE_SUMMARY.")
    ] = ""
    tenant: Tenant | msgspec.UnsetType = msgspec.UNSET  # absent without a tenant (version 1 records unchanged)

    @property
    def dedupe_key(self) -> tuple[str, int, int]:
        """A repeat of a record (after a crash) has the same key and the same content: keep one."""
        return (self.user_id if self.tenant is msgspec.UNSET else f"{self.tenant}/{self.user_id}", self.epoch, self.version)


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(UpdateRecord)


def encode_update(record: UpdateRecord) -> bytes:
    """The wire bytes of an update record."""
    return _ENCODER.encode(record)


def decode_update(data: bytes) -> UpdateRecord:
    """Read an update record. Raises `RecordDecodeError` if it is not one; unknown fields are ignored."""
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise RecordDecodeError(f"not an update record: {e}") from None
