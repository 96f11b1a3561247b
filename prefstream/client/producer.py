"""`Producer`: send events from a synchronous service (kafka-python), validated, keyed and partitioned as the worker expects.

    with Producer.from_env() as producer:
        producer.send(events.pair("u-42", "e-1", chosen="...", rejected="..."))

Every event is validated first (`prefstream.client.wire.validate`: the worker's decoder and the topic's size
limit), keyed by the UTF-8 bytes of its user key (`user_id`, or `tenant/user_id` for an event with a
tenant: `prefstream.schemas.keys`) and sent to `partition_for(user key, partitions)` (murmur2, the
partition of the worker that owns the user's state), with acks=all, idempotence and gzip compression.

Bounded buffering: at most `max_buffered_bytes` of events wait for acknowledgement; `send()` then blocks
up to `max_block_s` for room and raises `BufferFullError` after. Delivery errors are never lost: each
`send()` returns a `Delivery` to check; otherwise `on_error` is called, or else `flush()`/`close()` raise
`DeliveryError` naming the events that were not delivered.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from prefstream.client import delivery as d
from prefstream.client.config import ClientConfig
from prefstream.client.errors import BufferFullError, DeliveryError, TopicMissingError
from prefstream.client.wire import RECORD_OVERHEAD_BYTES, Prepared, topic_max_message_bytes, validate
from prefstream.schemas.events import Event
from prefstream.streams.partitioning import partition_for

__all__ = ["Delivery", "Producer"]


class Delivery:
    """The outcome of one `send()`: `result()` waits for the broker's acknowledgement."""

    def __init__(self, future: Any, event_id: str, topic: str) -> None:
        self._future = future
        self.event_id = event_id
        self.topic = topic

    def result(self, timeout_s: float | None = None) -> d.Delivered:
        """Where the event was stored; raises `DeliveryError` when it was not."""
        try:
            meta = self._future.get(timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - every Kafka error becomes one DeliveryError line
            raise d.delivery_error(self.topic, [self.event_id], exc) from None
        return d.Delivered(self.event_id, meta.topic, meta.partition, meta.offset)


class Producer:
    """A kafka-python producer with prefstream's keying, partitioning, validation and safe defaults."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        linger_ms: int = d.LINGER_MS,
        max_buffered_bytes: int = d.MAX_BUFFERED_BYTES,
        max_block_s: float = d.MAX_BLOCK_S,
        delivery_timeout_s: float = d.DELIVERY_TIMEOUT_S,
        on_error: Callable[[DeliveryError], None] | None = None,
    ) -> None:
        from kafka import KafkaProducer

        from prefstream.kafka.security import client_errors, kafka_python_kwargs

        self.config = config
        self.topic = config.topics.events
        self._max_buffered = max_buffered_bytes
        self._max_block_s = max_block_s
        self._on_error = on_error
        self._lock = threading.Condition()
        self._buffered = 0
        self._failed: list[tuple[str, BaseException]] = []
        #: event_id of every event sent and not yet acknowledged or failed, by send order.
        self._pending: dict[int, str] = {}
        self._sent = 0
        self._delivery_timeout_s = delivery_timeout_s
        with client_errors(config.kafka):
            self._producer = KafkaProducer(
                bootstrap_servers=config.kafka.bootstrap_servers,
                client_id=f"{config.kafka.client_id}-producer",
                acks="all",
                enable_idempotence=True,
                compression_type=d.COMPRESSION,
                linger_ms=linger_ms,
                max_block_ms=int(max_block_s * 1000),
                delivery_timeout_ms=int(delivery_timeout_s * 1000),
                request_timeout_ms=min(30_000, int(delivery_timeout_s * 1000) - linger_ms),
                max_request_size=max(1024 * 1024, config.limits.max_event_bytes + RECORD_OVERHEAD_BYTES),
                allow_auto_create_topics=False,
                **kafka_python_kwargs(config.kafka),
            )
        try:
            self.partitions = self._count_partitions()
            self.max_message_bytes = topic_max_message_bytes(config.kafka, self.topic)
        except BaseException:
            self._abandon()
            raise

    @classmethod
    def from_env(cls, **options: Any) -> Producer:
        """A producer configured from the environment (`ClientConfig.from_env()`); `options` as for the constructor."""
        return cls(ClientConfig.from_env(), **options)

    def _count_partitions(self) -> int:
        from kafka.errors import KafkaTimeoutError

        try:
            found = self._producer.partitions_for(self.topic)
        except KafkaTimeoutError:
            found = None
        if not found:
            raise TopicMissingError(
                f"topic {self.topic} does not exist at {self.config.kafka.bootstrap_servers}; create it with "
                "`prefstream topics ensure`, or set PREFSTREAM_EVENTS_TOPIC to the events topic"
            )
        return len(found)

    def validate(self, event: Event | bytes) -> Prepared:
        """Check `event` as `send()` would, without sending; raises `EventRejected`."""
        return validate(event, self.config.limits, self.max_message_bytes)

    def send(self, event: Event | bytes) -> Delivery:
        """Validate and send one event (a Struct from `prefstream.client.events`, or its JSON bytes)."""
        prepared = self.validate(event)
        size = len(prepared.key) + len(prepared.value)
        self._reserve(size)
        partition = partition_for(prepared.user_key, self.partitions)
        try:
            future = self._producer.send(self.topic, key=prepared.key, value=prepared.value, partition=partition)
        except Exception as exc:  # noqa: BLE001 - closed producer, metadata timeout: one line, like a failed delivery
            self._release(size)
            raise d.delivery_error(self.topic, [prepared.event_id], exc) from None
        with self._lock:
            self._sent += 1
            seq = self._sent
            self._pending[seq] = prepared.event_id
        future.add_callback(self._delivered, size, seq)
        future.add_errback(self._failed_delivery, size, seq)
        return Delivery(future, prepared.event_id, self.topic)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every event sent so far is acknowledged or failed; raises `DeliveryError` for failures not
        given to `on_error`, and for events still unacknowledged after `timeout_s` (default: the delivery
        timeout and 5 s more, so that a flush always ends)."""
        from kafka.errors import KafkaTimeoutError

        # kafka-python 3.0.12 can retry an in-flight batch past its delivery timeout (a deleted topic:
        # UnknownTopicOrPartition, "inf attempts left"); the bound makes such events a DeliveryError too.
        try:
            self._producer.flush(timeout=self._delivery_timeout_s + 5 if timeout_s is None else timeout_s)
            timed_out: BaseException | None = None
        except KafkaTimeoutError as exc:
            timed_out = exc
        with self._lock:
            failed, self._failed = self._failed, []
            waiting = list(self._pending.values()) if timed_out is not None else []
        lost = [event_id for event_id, _ in failed] + waiting
        if lost and (waiting or self._on_error is None):
            raise d.delivery_error(self.topic, lost, failed[0][1] if failed else timed_out)  # type: ignore[arg-type]

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then close the connections; raises `DeliveryError` like `flush()` (and then abandons what is left)."""
        try:
            self.flush(timeout_s)
        except BaseException:
            self._abandon()
            raise
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
        else:
            self._abandon()

    def _abandon(self) -> None:
        # Close without waiting, after a failure: kafka-python may raise again (KafkaTimeoutError for the
        # records it drops), but the caller needs the first error, which is already on its way.
        with contextlib.suppress(Exception):
            self._producer.close(timeout=0)

    # Bounded buffering: a byte count of unacknowledged events, released by the delivery callbacks
    # (which kafka-python runs on its sender thread).
    def _reserve(self, size: int) -> None:
        deadline = time.monotonic() + self._max_block_s
        with self._lock:
            while self._buffered and self._buffered + size > self._max_buffered:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BufferFullError(
                        f"{self._buffered} bytes of events wait for the broker's acknowledgement (max_buffered_bytes "
                        f"{self._max_buffered}) after {self._max_block_s} s; check the broker (`prefstream doctor`)"
                    )
                self._lock.wait(left)
            self._buffered += size

    def _release(self, size: int) -> None:
        with self._lock:
            self._buffered -= size
            self._lock.notify_all()

    def _delivered(self, size: int, seq: int, _meta: object) -> None:
        with self._lock:
            self._pending.pop(seq, None)
        self._release(size)

    def _failed_delivery(self, size: int, seq: int, exc: BaseException) -> None:
        with self._lock:
            event_id = self._pending.pop(seq, "?")
        self._release(size)
        if self._on_error is not None:
            self._on_error(d.delivery_error(self.topic, [event_id], exc))
            return
        with self._lock:
            self._failed.append((event_id, exc))
