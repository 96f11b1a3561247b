"""Source offsets: what the state includes, and the jumps that would otherwise lose a message silently.

The agent processes every source partition in offset order. `SourceTracker` knows, per partition it
serves, the last offset processed (in memory, and in the state's changelogged `SourceProgress`, so it
survives a move to another worker). For each message it classifies the offset:

- `next`:   position + 1, the normal case;
- `replay`: at or below the position: its state changes are already in the state (the changelog is an
            ordered prefix of the writes, `streams.store`), only its sends may not have reached the
            broker, so the handlers redo sends and skip what the state shows done;
- `gap`:    beyond position + 1: offsets were skipped (a consumer-library defect such as the one in
            `streams.faust_fixes`, or a commit that ran ahead of the state). `GapReader` reads the
            skipped offsets from the broker, the agent processes them first, and offsets with no
            record (transaction markers, compacted-away records) are confirmed empty, not assumed.

The first message of a partition with no progress record takes the group's committed offset as its
position (faust has it after the seek every assignment ends with), and the very first message of a
new group starts the count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from prefstream.streams.store import SourceProgress, Store

log = structlog.get_logger(__name__)

__all__ = ["GapFilled", "GapReader", "SourceRecord", "SourceTracker", "fill_gap"]

Kind = Literal["next", "replay", "gap"]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One message of a source topic, whichever client read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(slots=True)
class _Position:
    offset: int | None  # None: nothing processed yet in this group
    dead_lettered: int = -1


class SourceTracker:
    """Per source partition: the last offset processed, persisted in the state with every message."""

    def __init__(self, store: Store, roles: dict[str, str], committed: Callable[[str, int], int | None]) -> None:
        self.store = store
        self.roles = roles  # topic name -> role (events, repartition, results): stable keys for the state
        self.committed = committed  # the group's committed offset of (topic, partition), if known
        self._positions: dict[tuple[str, int], _Position] = {}

    def reset(self) -> None:
        """Forget positions held in memory (an assignment changed: the state is the truth again)."""
        self._positions.clear()

    def positions(self) -> dict[tuple[str, int], int]:
        """The last offset processed per (topic, partition) held in memory (for the lag gauge)."""
        return {tp: p.offset for tp, p in self._positions.items() if p.offset is not None}

    def _position(self, topic: str, partition: int) -> _Position:
        key = (topic, partition)
        position = self._positions.get(key)
        if position is None:
            stored = self.store.progress(self.roles[topic], partition)
            if stored is not None:
                position = _Position(stored.offset, stored.dead_lettered)
            else:
                committed = self.committed(topic, partition)
                position = _Position(None if committed is None else committed - 1)
            self._positions[key] = position
        return position

    def classify(self, record: SourceRecord) -> tuple[Kind, int]:
        """The record's kind and the first offset after the position (the start of a gap)."""
        position = self._position(record.topic, record.partition).offset
        if position is None or record.offset == position + 1:
            return "next", record.offset
        if record.offset <= position:
            return "replay", record.offset
        return "gap", position + 1

    def was_dead_lettered(self, record: SourceRecord) -> bool:
        """Whether the broker already confirmed a dead letter at or after this offset (so a replay of it
        must not write another)."""
        return record.offset <= self._position(record.topic, record.partition).dead_lettered

    def dead_lettered(self, record: SourceRecord) -> None:
        self._position(record.topic, record.partition).dead_lettered = record.offset

    def processed(self, record: SourceRecord) -> None:
        """Record `record` as processed, in memory and in the state (inside its processing)."""
        position = self._position(record.topic, record.partition)
        # A replay moves nothing but writes the record again (see `Store.rewrite_user`).
        position.offset = record.offset if position.offset is None else max(position.offset, record.offset)
        progress = SourceProgress(offset=position.offset, dead_lettered=position.dead_lettered)
        self.store.put_progress(self.roles[record.topic], record.partition, progress)


class GapReader:
    """Reads a range of offsets of one partition straight from the broker (no group, no commits)."""

    def __init__(self, make_consumer: Callable[[], Any], timeout_s: float) -> None:
        self._make_consumer = make_consumer
        self._consumer: Any = None
        self._lock = asyncio.Lock()
        self.timeout_s = timeout_s

    async def read(self, topic: str, partition: int, start: int, end: int) -> tuple[list[SourceRecord], int]:
        """Every record with `start <= offset < end` (offsets missing from the answer have no record), and how
        many offsets of the range the topic's retention had already deleted (below its log start).

        Raises TimeoutError if the broker does not deliver up to `end` in time (the agent then stops
        rather than step over what it could not read)."""
        from aiokafka import TopicPartition

        async with self._lock:
            consumer = await self._started()
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            log_start = (await consumer.beginning_offsets([tp]))[tp]
            expired = max(0, min(end, log_start) - start)
            start = max(start, log_start)
            consumer.seek(tp, start)
            found: list[SourceRecord] = []
            async with asyncio.timeout(self.timeout_s):
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=500, max_records=end - start)
                    for r in batch.get(tp, ()):
                        if start <= r.offset < end:
                            found.append(SourceRecord(topic, partition, r.offset, r.key, r.value, r.timestamp))
            return found, expired

    async def _started(self) -> Any:
        if self._consumer is None:
            consumer = self._make_consumer()
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def aclose(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


@dataclass(frozen=True)
class GapFilled:
    recovered: int  # records read back and processed
    empty: int  # offsets confirmed to hold no record (transaction markers, compaction)
    expired: int  # offsets the topic's retention deleted before they could be read (lost to retention)


async def fill_gap(
    reader: GapReader, record: SourceRecord, start: int, process: Callable[[SourceRecord], Awaitable[None]]
) -> GapFilled:
    """Read offsets [start, record.offset) and process each record found, in order."""
    found, expired = await reader.read(record.topic, record.partition, start, record.offset)
    for missing in found:
        await process(missing)
    return GapFilled(len(found), (record.offset - start) - len(found) - expired, expired)
