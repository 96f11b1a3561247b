"""Source offsets: what the state includes, and the jumps that would otherwise lose a message silently.

The agent processes every source partition in offset order. `SourceTracker` knows, per partition it
serves, the last offset processed (in memory, and in the state's changelog, so it survives a move to
another worker). In the state it is carried by the message's last write: a user record written last
carries the partition's positions (`streams.store.Stamp`, set by `begin`); a message whose last write
is anything else, or that writes nothing, writes the progress record (`SourceProgress`). Either way the
position is in the changelog after every other write of the message, so a restored state says exactly
which offsets it includes: the later of the progress record and the latest stamp (docs/reliability.md,
"Progress without a second write"). For each message it classifies the offset:

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

from prefstream.streams.store import ROLES, SourceProgress, Stamp, Store

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
        self._topics = {role: topic for topic, role in roles.items()}
        self._stamps: dict[int, tuple[int, ...]] | None = None  # from the user records, read once per assignment
        self._peeked: dict[tuple[str, int], int] = {}  # positions of partitions not processed yet (`_peek`)
        self._dead_lettered_before = -1

    def reset(self) -> None:
        """Forget positions held in memory (an assignment changed: the state is the truth again)."""
        self._positions.clear()
        self._stamps = None
        self._peeked.clear()

    def positions(self) -> dict[tuple[str, int], int]:
        """The last offset processed per (topic, partition) held in memory (for the lag gauge)."""
        return {tp: p.offset for tp, p in self._positions.items() if p.offset is not None}

    def _position(self, topic: str, partition: int) -> _Position:
        key = (topic, partition)
        position = self._positions.get(key)
        if position is None:
            position = self._restored(topic, partition)
            if position is None:
                committed = self.committed(topic, partition)
                position = _Position(None if committed is None else committed - 1)
            self._positions[key] = position
        return position

    def _restored(self, topic: str, partition: int) -> _Position | None:
        """The position the state holds: the later of the progress record and the latest stamp."""
        role = self.roles[topic]
        stored = self.store.progress(role, partition)
        if self._stamps is None:
            self._stamps = self.store.stamps()
        stamp = self._stamps.get(partition)
        stamped = -1 if stamp is None else stamp[ROLES.index(role)]
        if stored is None and stamped < 0:
            return None
        return _Position(max(stamped, -1 if stored is None else stored.offset), -1 if stored is None else stored.dead_lettered)

    def _peek(self, topic: str, partition: int) -> int:
        """The last offset processed, as far as memory or the state know (-1: unknown). Not kept as a position,
        so a partition not read yet still takes the committed offset when its first message comes."""
        key = (topic, partition)
        position = self._positions.get(key)
        if position is not None:
            return -1 if position.offset is None else position.offset
        peeked = self._peeked.get(key)
        if peeked is None:  # the state moves on only through `_positions`: what it held stays true until then
            restored = self._restored(topic, partition)
            peeked = self._peeked[key] = -1 if restored is None or restored.offset is None else restored.offset
        return peeked

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

    def begin(self, record: SourceRecord) -> None:
        """Before `record` is processed: user records written while it is carry the partition's positions,
        this record included (so the write can stand for the progress record)."""
        partition = record.partition
        own = self._position(record.topic, partition)
        offsets = []
        for role in ROLES:
            topic = self._topics.get(role)
            offsets.append(-1 if topic is None else self._peek(topic, partition))
        mine = ROLES.index(self.roles[record.topic])
        with_it = list(offsets)
        with_it[mine] = record.offset if own.offset is None else max(own.offset, record.offset)
        self.store.stamp = Stamp(partition, tuple(with_it))
        self.store.stamp_before = Stamp(partition, tuple(offsets))
        self.store.stamped_last = False
        self._dead_lettered_before = own.dead_lettered

    def processed(self, record: SourceRecord) -> None:
        """Record `record` as processed, in memory and in the state (inside its processing): nothing to write
        when its last write was a user record stamped by `begin`, else the progress record."""
        position = self._position(record.topic, record.partition)
        # A replay moves nothing but writes the record again (see `Store.rewrite_user`).
        position.offset = record.offset if position.offset is None else max(position.offset, record.offset)
        stamped = self.store.stamp is not None and self.store.stamped_last
        if not stamped or position.dead_lettered != self._dead_lettered_before:
            self.store.stamped_last = False  # a progress record after a final write claims nothing new: allowed
            progress = SourceProgress(offset=position.offset, dead_lettered=position.dead_lettered)
            self.store.put_progress(self.roles[record.topic], record.partition, progress)
        self.store.stamp = self.store.stamp_before = None
        self.store.stamped_last = False


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
