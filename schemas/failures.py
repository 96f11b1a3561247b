"""Failure records: one per model update that failed, on `PREFSTREAM_FAILURES_TOPIC` (key = UTF-8 `user_id`).

They carry identifiers, counts and codes only, never user text or model output, so the topic can be read
by operators and kept longer than the data it describes.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from prefstream.schemas.errors import RecordDecodeError
from prefstream.schemas.events import Tenant, UserId

#: Version of the failure contract written by this code (2: `tenant` added); a record without a tenant is
#: still written as version 1 (`schemas.profiles.record_version`).
FAILURE_SCHEMA_VERSION: Final = 2

#: The reason of the extra record written when a user is parked (the model's reasons are
#: `prefstream.models.errors.FailureReason`).
PARKED: Final = "parked"


class FailureRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A model update that did not produce a profile; the previous summary stays current."""

    schema_version: Annotated[int, Meta(ge=1, description="Version of this record's contract: 1, or 2 when it has a `tenant`.")]
    user_id: UserId
    epoch: Annotated[int, Meta(ge=1, description="The user's epoch the update belonged to.")]
    base_version: Annotated[int, Meta(ge=0, description="Profile version the update started from (0: none yet).")]
    reason: Annotated[str, Meta(description="Stable failure code (see the table of reasons), e.g. `timeout`.")]
    attempts: Annotated[int, Meta(ge=1, description="Model calls made before giving up.")]
    event_count: Annotated[int, Meta(ge=0, description="Events in the failed update.")]
    first_event_id: Annotated[str, Meta(description="event_id of the earliest event in the update.")] = ""
    last_event_id: Annotated[str, Meta(description="event_id of the latest event in the update.")] = ""
    first_event_ts: Annotated[str, Meta(description="Earliest `ts` in the update, RFC 3339 UTC.")] = ""
    last_event_ts: Annotated[str, Meta(description="Latest `ts` in the update, RFC 3339 UTC.")] = ""
    failed_at: Annotated[str, Meta(description="When the last attempt failed, RFC 3339 UTC.")] = ""
    model: Annotated[str, Meta(description="Model id that was called.")] = ""
    prompt_version: Annotated[str, Meta(description="Prompt template identifier.")] = ""
    backend: Annotated[str, Meta(description="Model backend: vllm, openai, extractive or ledger.")] = ""
    tenant: Tenant | msgspec.UnsetType = msgspec.UNSET  # absent without a tenant (version 1 records unchanged)


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(FailureRecord)


def encode_failure(record: FailureRecord) -> bytes:
    """The wire bytes of a failure record."""
    return _ENCODER.encode(record)


def decode_failure(data: bytes) -> FailureRecord:
    """Read a failure record. Raises `RecordDecodeError` if it is not one."""
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise RecordDecodeError(f"not a failure record: {e}") from None
