"""What a send resolves to, and the one way a failed delivery is reported (shared by both producers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prefstream.client.errors import DeliveryError

#: Producer defaults, shared by the sync and asyncio producers (the README's "From your service" lists them).
LINGER_MS: Final = 5
MAX_BUFFERED_BYTES: Final = 32 * 1024 * 1024  # the Java producer's buffer.memory
MAX_BLOCK_S: Final = 10.0
DELIVERY_TIMEOUT_S: Final = 120.0  # the Java producer's delivery.timeout.ms
#: gzip is in every Python (snappy, lz4 and zstd need extra packages on the producer and the consumers).
COMPRESSION: Final = "gzip"


@dataclass(frozen=True)
class Delivered:
    """Where the broker stored an event."""

    event_id: str
    topic: str
    partition: int
    offset: int


def delivery_error(topic: str, event_ids: list[str], exc: BaseException) -> DeliveryError:
    """One line for events the broker did not acknowledge (the Kafka error's class name, never its payload)."""
    cause = type(exc).__name__
    count = len(event_ids)
    first = event_ids[0] if event_ids else "?"
    what = f"event {first}" if count == 1 else f"{count} events (first {first})"
    message = (
        f"{what} not delivered to {topic}: {cause}; the producer retried until its delivery timeout. "
        "Check that the broker is up (`prefstream doctor`) and send them again (same event_id: applied once)"
    )
    return DeliveryError(message, tuple(event_ids), cause)
