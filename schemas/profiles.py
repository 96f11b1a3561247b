"""Profiles: what prefstream publishes to `PREFSTREAM_PROFILES_TOPIC` (compacted, key = UTF-8 `user_id`, or
`tenant/user_id` with a tenant: `schemas.keys`).

One record per applied update. Consumers order a user's records by `(epoch, version)` and keep the
greatest; a forgotten user gets a tombstone (null value) and the next profile after it has `epoch` + 1
and `version` 1. Readers must ignore fields they do not know (new ones are appended, never retyped).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from prefstream.schemas import bounds as b
from prefstream.schemas.errors import RecordDecodeError
from prefstream.schemas.events import Tenant, UserId

#: Version of the profile contract written by this code (2: `tenant` added). A record without a tenant is
#: written as version 1 and is byte for byte what version 1 wrote: deployments without tenants see no change.
PROFILE_SCHEMA_VERSION: Final = 2

Rfc3339Utc = Annotated[str, Meta(description="RFC 3339 UTC with milliseconds, e.g. 2026-01-31T08:15:00.250Z")]
Count = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(ge=1)]


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """A user's current textual preference summary and where it came from."""

    schema_version: Annotated[int, Meta(ge=1, description="Version of this record's contract: 1, or 2 when it has a `tenant`.")]
    user_id: UserId
    epoch: Annotated[int, Meta(ge=1, description="Starts at 1; +1 at every forget.")]
    version: Annotated[int, Meta(ge=1, description="1 for the first summary of an epoch, +1 per applied update.")]
    summary: Annotated[str, Meta(description="The preference summary, plain natural language.")]
    events_applied: Annotated[
        int, Meta(ge=0, description="Distinct events folded into this summary in this epoch (cumulative).")
    ]
    updated_at: Rfc3339Utc
    last_event_ts: Annotated[str, Meta(description="Latest `ts` of the applied events, as RFC 3339 UTC.")]
    model: Annotated[str, Meta(description="Model id that wrote the summary.")]
    prompt_version: Annotated[str, Meta(description="Identifies the prompt template the model was given.")]
    # Provenance beyond the list: enough to audit one update without keeping user text.
    backend: Annotated[str, Meta(description="Model backend: vllm, openai, extractive or ledger.")] = ""
    update_events: Annotated[int, Meta(ge=0, description="Events folded in by the update that wrote this record.")] = 0
    update_triples: Annotated[int, Meta(ge=0, description="Evidence triples the model saw in that update.")] = 0
    last_event_id: Annotated[
        str, Meta(max_length=b.MAX_ID_CHARS, description="event_id of the latest applied event.")
    ] = ""
    prompt_tokens: Annotated[int, Meta(ge=0, description="Prompt tokens of that update (0 when unknown).")] = 0
    completion_tokens: Annotated[int, Meta(ge=0, description="Generated tokens of that update (0 when unknown).")] = 0
    # Absent (not null) without a tenant, so a deployment without tenants publishes version 1 records unchanged.
    tenant: Tenant | msgspec.UnsetType = msgspec.UNSET

    @property
    def order_key(self) -> tuple[int, int]:
        """Records of one user sort by this; the greatest is current."""
        return (self.epoch, self.version)


def record_version(tenant: str | None) -> int:
    """The contract version a profile or failure record is written with: 1 without a tenant (unchanged), 2 with one."""
    return 1 if tenant is None else 2


def tenant_field(tenant: str | None) -> str | msgspec.UnsetType:
    """The `tenant` field's value: absent without a tenant."""
    return msgspec.UNSET if tenant is None else tenant


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(Profile)


def encode_profile(profile: Profile) -> bytes:
    """The wire bytes of a profile record."""
    return _ENCODER.encode(profile)


def decode_profile(data: bytes) -> Profile:
    """Read a profile record. Raises `RecordDecodeError` if it is not one; unknown fields are ignored."""
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise RecordDecodeError(f"not a profile record: {e}") from None
