"""`validate()`: an event to the exact bytes and key the worker accepts, checked with the worker's decoder.

An event is accepted end to end only if every hop takes it:

1. the worker's decoder (`prefstream.schemas.decode.decode_event`, with the same `LimitSettings`): every
   field rule, and at most `PREFSTREAM_MAX_EVENT_BYTES` (256 KiB by default; a larger event would be
   dead-lettered `too_large`);
2. the events topic's `max.message.bytes` (the broker's default is 1 MiB), less the record's framing: a
   larger record is refused by the broker (`MessageSizeTooLargeError`) before prefstream ever sees it.

Both are checked here, before sending, and both fail as `EventRejected` with code `too_large`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prefstream.schemas.decode import decode_event
from prefstream.schemas.errors import EventRejected, RejectCode
from prefstream.schemas.events import Event, encode_event
from prefstream.schemas.keys import event_key
from prefstream.settings import KafkaSettings, LimitSettings

__all__ = ["Prepared", "RECORD_OVERHEAD_BYTES", "topic_max_message_bytes", "validate"]

#: Room left for a record batch's header (61 bytes) and the record's own framing, key and timestamp
#: (at most 5 + a 193-byte `tenant/user_id` key + varints): what a value may take of `max.message.bytes`.
RECORD_OVERHEAD_BYTES: Final = 320


@dataclass(frozen=True)
class Prepared:
    """A validated event: the message key (UTF-8 `user_id`, or `tenant/user_id` with a tenant) and value (JSON)."""

    event_id: str
    user_id: str
    key: bytes
    value: bytes
    tenant: str | None = None

    @property
    def user_key(self) -> str:
        """The key as text: what the worker's partitioner (`partition_for`) hashes to find the owner."""
        return self.key.decode("utf-8")


def validate(event: Event | bytes, limits: LimitSettings, max_message_bytes: int | None = None) -> Prepared:
    """Check `event` as the worker will; raises `EventRejected` (code, JSON path, message) when it would not pass.

    `event` is a Struct (from `prefstream.client.events`) or the JSON bytes of one (sent as they are, so fields
    this version does not know survive). `max_message_bytes` is the topic's `max.message.bytes`, when known.
    """
    value = encode_event(event) if not isinstance(event, (bytes, bytearray, memoryview)) else bytes(event)
    decoded = decode_event(None, value, limits)
    key = event_key(decoded)
    if max_message_bytes is not None and len(value) > max_message_bytes - RECORD_OVERHEAD_BYTES:
        raise EventRejected(
            RejectCode.TOO_LARGE,
            "$",
            f"expected at most {max_message_bytes - RECORD_OVERHEAD_BYTES} bytes (the events topic's "
            f"max.message.bytes, {max_message_bytes}, less the record framing), got {len(value)}",
        )
    return Prepared(decoded.event_id, decoded.user_id, key, value, decoded.tenant)


def topic_max_message_bytes(kafka: KafkaSettings, topic: str) -> int | None:
    """The topic's effective `max.message.bytes` (its own, else the broker's), or None when it cannot be read.

    Reading topic configs needs the DescribeConfigs ACL, which an app may lack: then the worker's own limit
    (`PREFSTREAM_MAX_EVENT_BYTES`, below the broker's default) is the only client-side check.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    from prefstream.kafka.security import kafka_python_kwargs

    admin = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers, client_id=f"{kafka.client_id}-client-admin",
            request_timeout_ms=int(kafka.connect_timeout_s * 1000),
            **kafka_python_kwargs(kafka),
        )  # fmt: skip
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        value = described.get("topic", {}).get(topic, {}).get("max.message.bytes", {}).get("value")
        return int(value) if value is not None else None
    except Exception:  # noqa: BLE001 - best effort: any failure leaves the worker's limit as the check
        return None
    finally:
        if admin is not None:
            admin.close()
