"""`ProfileReader`: every user's latest profile, read from the compacted profiles topic (kafka-python).

    with ProfileReader.from_env() as reader:
        reader.catch_up()                  # every profile published so far
        profile = reader.get("u-42")       # local, no I/O; get("u-42", tenant="shop") for a tenant's user
        for change in reader.changes():    # then follow: ProfileChange(user_id, profile, previous, tenant)
            ...

The reader assigns itself every partition of the topic (no consumer group: each reader holds the whole
view, so memory grows with the number of users) and applies records through `ProfileView`: ordered by
(epoch, version), repeats ignored, tombstones honoured. `on_change` is called for each change, on the
thread that polls. A service that does not want the whole topic asks the read API instead (`ProfileApi`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from prefstream.client.config import ClientConfig
from prefstream.client.errors import ClientError, TopicMissingError
from prefstream.client.view import ProfileChange, ProfileView
from prefstream.schemas.profiles import Profile

__all__ = ["ProfileReader"]

OnChange = Callable[[ProfileChange], None]


class ProfileReader:
    """The latest profile per user, from the beginning of the profiles topic (or from now: `from_beginning=False`)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        on_change: OnChange | None = None,
        from_beginning: bool = True,
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from prefstream.kafka.security import client_errors, kafka_python_kwargs

        self.config = config
        self.topic = config.topics.profiles
        self.view = ProfileView()
        self._on_change = on_change
        with client_errors(config.kafka):
            self._consumer = KafkaConsumer(
                bootstrap_servers=config.kafka.bootstrap_servers,
                client_id=f"{config.kafka.client_id}-profile-reader",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **kafka_python_kwargs(config.kafka),
            )
        try:
            partitions = self._partitions(config.kafka.connect_timeout_s)
            self._assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            with client_errors(config.kafka):
                self._consumer.assign(self._assigned)
                if from_beginning:
                    self._consumer.seek_to_beginning(*self._assigned)
                else:
                    self._consumer.seek_to_end(*self._assigned)
                #: Where "caught up" is: the end of every partition when the reader started.
                self._end: dict[Any, int] = self._consumer.end_offsets(self._assigned)
        except BaseException:
            self._consumer.close()
            raise

    @classmethod
    def from_env(cls, **options: Any) -> ProfileReader:
        """A reader configured from the environment (`ClientConfig.from_env()`); `options` as for the constructor."""
        return cls(ClientConfig.from_env(), **options)

    def _partitions(self, timeout_s: float) -> set[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._consumer.partitions_for_topic(self.topic)
            if found:
                return set(found)
            if time.monotonic() >= deadline:
                raise TopicMissingError(
                    f"topic {self.topic} does not exist at {self.config.kafka.bootstrap_servers}; start a worker "
                    "(it creates it) or `prefstream topics ensure`, or set PREFSTREAM_PROFILES_TOPIC"
                )
            time.sleep(0.2)

    def get(self, user_id: str, tenant: str | None = None) -> Profile | None:
        """The user's current profile as read so far (None: none yet, or forgotten); `tenant`: the user's tenant.
        No I/O."""
        return self.view.get(user_id, tenant)

    def poll(self, timeout_s: float = 1.0) -> list[ProfileChange]:
        """Read what arrived (waiting up to `timeout_s` for something) and return the changes it made."""
        from prefstream.kafka.security import client_errors

        with client_errors(self.config.kafka):
            batch = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        changes = []
        for records in batch.values():
            for record in records:
                change = self.view.apply(record.key, record.value)
                if change is not None:
                    changes.append(change)
                    if self._on_change is not None:
                        self._on_change(change)
        return changes

    def caught_up(self) -> bool:
        """Whether everything published before the reader started has been read."""
        return all(self._consumer.position(tp) >= end for tp, end in self._end.items())

    def catch_up(self, timeout_s: float = 60.0) -> int:
        """Read everything published before the reader started; the number of users with a profile then."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up():
            if time.monotonic() >= deadline:
                raise ClientError(f"could not read {self.topic} to its end within {timeout_s} s; is the broker slow?")
            self.poll(0.2)
        return len(self.view)

    def changes(self, idle_timeout_s: float | None = None) -> Iterator[ProfileChange]:
        """Follow the topic: every change as it arrives; ends after `idle_timeout_s` without one (None: never)."""
        last = time.monotonic()
        while True:
            got = self.poll(0.5)
            yield from got
            if got:
                last = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last >= idle_timeout_s:
                return

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> ProfileReader:
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
