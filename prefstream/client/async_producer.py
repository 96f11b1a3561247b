"""`AsyncProducer`: the asyncio flavour of `Producer` (aiokafka), for async web apps.

    async with AsyncProducer.from_env() as producer:
        await producer.send(events.pair("u-42", "e-1", chosen="...", rejected="..."))

Same validation, key, partition, defaults and bounded buffering as the sync `Producer`. `send()` returns
once the event is buffered, with a future of its `Delivered`; `send_and_wait()` waits for the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

from prefstream.client import delivery as d
from prefstream.client.config import ClientConfig
from prefstream.client.errors import BufferFullError, DeliveryError, TopicMissingError
from prefstream.client.wire import RECORD_OVERHEAD_BYTES, Prepared, topic_max_message_bytes, validate
from prefstream.schemas.events import Event
from prefstream.streams.partitioning import partition_for

__all__ = ["AsyncProducer"]


class AsyncProducer:
    """An aiokafka producer with prefstream's keying, partitioning, validation and safe defaults."""

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
        self.config = config
        self.topic = config.topics.events
        self.partitions = 0
        self.max_message_bytes: int | None = None
        self._options = {"linger_ms": linger_ms, "delivery_timeout_s": delivery_timeout_s}
        self._max_buffered = max_buffered_bytes
        self._max_block_s = max_block_s
        self._on_error = on_error
        self._buffered = 0
        self._room: asyncio.Condition | None = None
        self._failed: list[tuple[str, BaseException]] = []
        self._producer: Any = None
        self._tasks: set[asyncio.Future[None]] = set()
        #: event_id of every event buffered and not yet acknowledged or failed.
        self._pending: dict[int, str] = {}
        self._sent = 0

    @classmethod
    def from_env(cls, **options: Any) -> AsyncProducer:
        """A producer configured from the environment (`ClientConfig.from_env()`); `options` as for the constructor."""
        return cls(ClientConfig.from_env(), **options)

    async def start(self) -> None:
        """Connect, find the events topic's partitions and size limit."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        from prefstream.kafka.security import aiokafka_kwargs, connect_error, probe

        kafka = self.config.kafka
        await asyncio.to_thread(probe, kafka)  # an unreachable address: one line naming why
        self._room = asyncio.Condition()
        # aiokafka retries a batch until request_timeout_ms: it is the delivery timeout here.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=f"{kafka.client_id}-producer",
            acks="all",
            enable_idempotence=True,
            compression_type=d.COMPRESSION,
            linger_ms=self._options["linger_ms"],
            request_timeout_ms=int(self._options["delivery_timeout_s"] * 1000),
            max_request_size=max(1024 * 1024, self.config.limits.max_event_bytes + RECORD_OVERHEAD_BYTES),
            **aiokafka_kwargs(kafka),
        )
        try:
            await asyncio.wait_for(self._producer.start(), kafka.connect_timeout_s)
            # One metadata request (partitions_for() would retry a missing topic until its timeout).
            metadata = await asyncio.wait_for(self._producer.client.fetch_all_metadata(), self._max_block_s)
            found = metadata.partitions_for_topic(self.topic)
            if not found:
                raise TopicMissingError(
                    f"topic {self.topic} does not exist at {kafka.bootstrap_servers}; create it with "
                    "`prefstream topics ensure`, or set PREFSTREAM_EVENTS_TOPIC to the events topic"
                )
            self.partitions = len(found)
            self.max_message_bytes = await asyncio.to_thread(
                topic_max_message_bytes, kafka, self.topic
            )
        except (KafkaError, TimeoutError, OSError) as exc:
            await self._producer.stop()
            raise connect_error(kafka, exc) from None
        except BaseException:
            await self._producer.stop()
            raise

    def validate(self, event: Event | bytes) -> Prepared:
        """Check `event` as `send()` would, without sending; raises `EventRejected`."""
        return validate(event, self.config.limits, self.max_message_bytes)

    async def send(self, event: Event | bytes) -> asyncio.Future[d.Delivered]:
        """Validate and buffer one event; the returned future resolves to where it was stored (or `DeliveryError`)."""
        if self._producer is None or self._room is None:
            raise RuntimeError("AsyncProducer.send() before start(): use `async with` or await start() first")
        prepared = self.validate(event)
        size = len(prepared.key) + len(prepared.value)
        await self._reserve(size)
        partition = partition_for(prepared.user_key, self.partitions)
        try:
            sent = await self._producer.send(self.topic, value=prepared.value, key=prepared.key, partition=partition)
        except Exception as exc:  # noqa: BLE001 - one line, like a failed delivery
            await self._release(size)
            raise d.delivery_error(self.topic, [prepared.event_id], exc) from None
        result: asyncio.Future[d.Delivered] = asyncio.get_running_loop().create_future()
        self._sent += 1
        seq = self._sent
        self._pending[seq] = prepared.event_id
        sent.add_done_callback(lambda f: self._settle(f, result, size, seq))
        return result

    async def send_and_wait(self, event: Event | bytes) -> d.Delivered:
        """Validate, send and wait for the broker's acknowledgement; raises `DeliveryError` when there is none."""
        return await (await self.send(event))

    async def flush(self) -> None:
        """Wait for every buffered event; raises `DeliveryError` for failures not given to `on_error`."""
        if self._producer is None:
            return
        assert self._room is not None
        try:
            # Bounded, so that a flush always ends: the delivery timeout and 5 s more.
            async with asyncio.timeout(self._options["delivery_timeout_s"] + 5):
                await self._producer.flush()
                async with self._room:
                    await self._room.wait_for(lambda: self._buffered == 0)  # the callbacks that settle the futures
        except TimeoutError as exc:
            raise d.delivery_error(self.topic, list(self._pending.values()), exc) from None
        failed, self._failed = self._failed, []
        if failed and self._on_error is None:
            raise d.delivery_error(self.topic, [event_id for event_id, _ in failed], failed[0][1])

    async def stop(self) -> None:
        """Flush, then close; raises `DeliveryError` like `flush()`."""
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            await self.stop()
        elif self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def _settle(self, sent: asyncio.Future[Any], result: asyncio.Future[d.Delivered], size: int, seq: int) -> None:
        event_id = self._pending.pop(seq, "?")
        failure = sent.exception() if not sent.cancelled() else asyncio.CancelledError()
        if failure is None:
            meta = sent.result()
            result.set_result(d.Delivered(event_id, meta.topic, meta.partition, meta.offset))
        else:
            error = d.delivery_error(self.topic, [event_id], failure)
            result.set_exception(error)
            result.exception()  # retrieved: the error is reported through on_error or flush(), not as "never retrieved"
            if self._on_error is not None:
                self._on_error(error)
            else:
                self._failed.append((event_id, failure))
        # Waking the senders waiting for room needs the condition's lock: a task (kept until done).
        task = asyncio.ensure_future(self._release(size))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reserve(self, size: int) -> None:
        assert self._room is not None
        async with self._room:
            try:
                await asyncio.wait_for(
                    self._room.wait_for(lambda: not self._buffered or self._buffered + size <= self._max_buffered),
                    self._max_block_s,
                )
            except TimeoutError:
                raise BufferFullError(
                    f"{self._buffered} bytes of events wait for the broker's acknowledgement (max_buffered_bytes "
                    f"{self._max_buffered}) after {self._max_block_s} s; check the broker (`prefstream doctor`)"
                ) from None
            self._buffered += size

    async def _release(self, size: int) -> None:
        assert self._room is not None
        async with self._room:
            self._buffered -= size
            self._room.notify_all()
