"""Records on prefstream's internal topics (msgpack; never read by anything but the worker).

- `{app_id}-repartition`: `Forwarded`, an event that arrived on a partition other than its owner's,
  sent on to partition murmur2(user_id) % P with its original bytes.
- `{app_id}-results`: `FoldResult` (a finished model update, success or failure, to be applied by
  compare-and-set) and `Redrive` (unpark users; written by `prefstream redrive`).
- `{app_id}-backfill`: `BackfillChunk`, part of a user's history (written by `prefstream backfill`).

Both topics are co-partitioned with the events topic (same partition count, key = UTF-8 user id,
explicit partition), so the agent that consumes them may write the same tables.
"""

from __future__ import annotations

from typing import Final

import msgspec

from prefstream.models.interface import UpdateFailure, UpdateSuccess
from prefstream.streams.errors import InternalRecordError

__all__ = [
    "BackfillChunk", "Command", "FoldResult", "Forwarded", "Redrive", "decode_backfill", "decode_command",
    "decode_forwarded", "encode",
]


class Forwarded(msgspec.Struct, frozen=True, kw_only=True):
    """An event re-sent to the partition that owns its user."""

    value: bytes  # the original message value, verbatim
    source_partition: int
    source_offset: int
    produced_ms: int  # the original message's Kafka timestamp
    cause: str  # "partitioner" (key is the user id, another partitioner) or "key" (key is not the user id)


class FoldResult(msgspec.Struct, frozen=True, kw_only=True, tag="result"):
    """The outcome of one model update, computed from state (epoch, base_version, event_ids)."""

    request_id: str
    user_id: str
    epoch: int
    base_version: int
    event_ids: tuple[str, ...]
    attempt: int
    degraded: bool
    outcome: UpdateSuccess | UpdateFailure
    backend: str
    requested_ms: int
    finished_ms: int
    # The backend's identity, recorded in failure records too (defaults: results of a worker before 0.3).
    model: str = ""
    prompt_version: str = ""


class Redrive(msgspec.Struct, frozen=True, kw_only=True, tag="redrive"):
    """Unpark users of this partition: the listed ones, or every parked one when the list is empty."""

    user_ids: tuple[str, ...] = ()
    requested_ms: int = 0


Command = FoldResult | Redrive


class BackfillChunk(msgspec.Struct, frozen=True, kw_only=True):
    """Part of one user's history, on `{app_id}-backfill` (written by `prefstream backfill`, `streams.backfill`).

    A user's chunks are sent in order, on the user's partition; `final` marks the last one."""

    key: str  # the user key (`schemas.keys`)
    events: tuple[bytes, ...]  # event message values (JSON), verbatim, already validated by the tool
    final: bool

_ENC: Final = msgspec.msgpack.Encoder()
_FORWARDED: Final = msgspec.msgpack.Decoder(Forwarded)
_COMMAND: Final = msgspec.msgpack.Decoder(Command)


def encode(record: Forwarded | FoldResult | Redrive | BackfillChunk) -> bytes:
    return _ENC.encode(record)


_BACKFILL: Final = msgspec.msgpack.Decoder(BackfillChunk)


def decode_backfill(raw: bytes | None) -> BackfillChunk:
    try:
        return _BACKFILL.decode(raw or b"")
    except msgspec.DecodeError as e:
        raise InternalRecordError(f"not a backfill chunk: {e}") from None


def decode_forwarded(raw: bytes) -> Forwarded:
    try:
        return _FORWARDED.decode(raw)
    except msgspec.DecodeError as e:
        raise InternalRecordError(f"not a forwarded event: {e}") from None


def decode_command(raw: bytes) -> Command:
    try:
        return _COMMAND.decode(raw)
    except msgspec.DecodeError as e:
        raise InternalRecordError(f"not a result or command: {e}") from None
