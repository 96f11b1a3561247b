"""`AsyncProfileReader`: the asyncio flavour of `ProfileReader` (aiokafka), with an async iterator of changes.

    async with AsyncProfileReader.from_env() as reader:
        await reader.catch_up()
        async for change in reader.changes():
            ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from prefstream.client.config import ClientConfig
from prefstream.client.errors import ClientError, TopicMissingError
from prefstream.client.view import ProfileChange, ProfileView
from prefstream.schemas.profiles import Profile

__all__ = ["AsyncProfileReader"]


class AsyncProfileReader:
    """The latest profile per user, from the beginning of the profiles topic (or from now: `from_beginning=False`)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        on_change: Callable[[ProfileChange], None] | None = None,
        from_beginning: bool = True,
    ) -> None:
        self.config = config
        self.topic = config.topics.profiles
        self.view = ProfileView()
        self._on_change = on_change
        self._from_beginning = from_beginning
        self._consumer: Any = None
        self._end: dict[Any, int] = {}

    @classmethod
    def from_env(cls, **options: Any) -> AsyncProfileReader:
        """A reader configured from the environment (`ClientConfig.from_env()`); `options` as for the constructor."""
        return cls(ClientConfig.from_env(), **options)

    async def start(self) -> None:
        """Connect and assign every partition of the profiles topic."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        from prefstream.kafka.security import aiokafka_kwargs, connect_error, probe

        kafka = self.config.kafka
        await asyncio.to_thread(probe, kafka)  # an unreachable address: one line naming why
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=f"{kafka.client_id}-profile-reader",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **aiokafka_kwargs(kafka),
        )
        try:
            await asyncio.wait_for(self._consumer.start(), kafka.connect_timeout_s)
            # One metadata request; the consumer's public topics() returns only names, and its
            # partitions_for_topic() knows only topics it already follows.
            cluster = await asyncio.wait_for(self._consumer._client.fetch_all_metadata(), kafka.connect_timeout_s)
            partitions = cluster.partitions_for_topic(self.topic)
            if not partitions:
                raise TopicMissingError(
                    f"topic {self.topic} does not exist at {kafka.bootstrap_servers}; start a worker "
                    "(it creates it) or `prefstream topics ensure`, or set PREFSTREAM_PROFILES_TOPIC"
                )
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            self._consumer.assign(assigned)
            if self._from_beginning:
                await self._consumer.seek_to_beginning(*assigned)
            else:
                await self._consumer.seek_to_end(*assigned)
            self._end = await self._consumer.end_offsets(assigned)
        except (KafkaError, TimeoutError, OSError) as exc:
            await self._consumer.stop()
            raise connect_error(kafka, exc) from None
        except BaseException:
            await self._consumer.stop()
            raise

    def get(self, user_id: str, tenant: str | None = None) -> Profile | None:
        """The user's current profile as read so far (None: none yet, or forgotten); `tenant`: the user's tenant.
        No I/O."""
        return self.view.get(user_id, tenant)

    async def poll(self, timeout_s: float = 1.0) -> list[ProfileChange]:
        """Read what arrived (waiting up to `timeout_s` for something) and return the changes it made."""
        if self._consumer is None:
            raise RuntimeError("AsyncProfileReader.poll() before start(): use `async with` or await start() first")
        batch = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000))
        changes = []
        for records in batch.values():
            for record in records:
                change = self.view.apply(record.key, record.value)
                if change is not None:
                    changes.append(change)
                    if self._on_change is not None:
                        self._on_change(change)
        return changes

    async def caught_up(self) -> bool:
        """Whether everything published before the reader started has been read."""
        for tp, end in self._end.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def catch_up(self, timeout_s: float = 60.0) -> int:
        """Read everything published before the reader started; the number of users with a profile then."""
        deadline = time.monotonic() + timeout_s
        while not await self.caught_up():
            if time.monotonic() >= deadline:
                raise ClientError(f"could not read {self.topic} to its end within {timeout_s} s; is the broker slow?")
            await self.poll(0.2)
        return len(self.view)

    async def changes(self, idle_timeout_s: float | None = None) -> AsyncIterator[ProfileChange]:
        """Follow the topic: every change as it arrives; ends after `idle_timeout_s` without one (None: never)."""
        last = time.monotonic()
        while True:
            got = await self.poll(0.5)
            for change in got:
                yield change
            if got:
                last = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last >= idle_timeout_s:
                return

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def __aenter__(self) -> AsyncProfileReader:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
