"""Source offset tracking: jumps are read back from the real broker and processed in order, replays are
recognised, empty offsets (transaction markers) are confirmed, and the position survives in the state."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from prefstream.streams.progress import GapReader, SourceRecord, SourceTracker, fill_gap
from prefstream.streams.store import SourceProgress, Store

pytestmark = pytest.mark.kafka
READ_TIMEOUT_S = 30.0


def tracker_for(topic: str, table: dict[bytes, bytes], committed: int | None = None) -> SourceTracker:
    return SourceTracker(Store(table), {topic: "events"}, lambda t, p: committed)


def reader_for(bootstrap: str) -> GapReader:
    from aiokafka import AIOKafkaConsumer

    return GapReader(lambda: AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False), READ_TIMEOUT_S)


async def produce(bootstrap: str, topic: str, values: list[bytes], *, transactional: bool = False) -> None:
    from aiokafka import AIOKafkaProducer

    kw = {"transactional_id": f"tx-{topic}"} if transactional else {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kw)
    await producer.start()
    try:
        for value in values:
            if transactional:
                async with producer.transaction():
                    await producer.send_and_wait(topic, value, partition=0)
            else:
                await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()


async def run_consumer(tracker: SourceTracker, reader: GapReader, delivered: list[SourceRecord]) -> list[tuple[int, str]]:
    """Feed `delivered` as the agent would; return (offset, how) for every record processed."""
    seen: list[tuple[int, str]] = []

    async def process(record: SourceRecord, how: str) -> None:
        seen.append((record.offset, how))
        tracker.processed(record)

    for record in delivered:
        kind, start = tracker.classify(record)
        if kind == "gap":
            await fill_gap(reader, record, start, lambda r: process(r, "recovered"))
        await process(record, kind)
    return seen


async def read_all(bootstrap: str, topic: str) -> list[SourceRecord]:
    reader = reader_for(bootstrap)
    try:
        from aiokafka import TopicPartition

        consumer = await reader._started()
        end = (await consumer.end_offsets([TopicPartition(topic, 0)]))[TopicPartition(topic, 0)]
        return (await reader.read(topic, 0, 0, end))[0]
    finally:
        await reader.aclose()


async def test_a_skipped_offset_is_read_back_and_processed_before_the_next(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """The consumer delivers 0..9 without 3 and 7..8 (what faust's abandoned delivery looks like to the agent):
    every offset is still processed exactly once, in order, and the state's progress ends at 9."""
    topic = kafka_topics(unique_name("gaps"))
    await produce(kafka_bootstrap, topic, [f"m{i}".encode() for i in range(10)])
    records = await read_all(kafka_bootstrap, topic)
    table: dict[bytes, bytes] = {}
    tracker, reader = tracker_for(topic, table), reader_for(kafka_bootstrap)
    try:
        delivered = [r for r in records if r.offset not in (3, 7, 8)]
        seen = await run_consumer(tracker, reader, delivered)
    finally:
        await reader.aclose()
    assert [o for o, _ in seen] == list(range(10))
    assert [o for o, how in seen if how == "recovered"] == [3, 7, 8]
    assert Store(table).progress("events", 0) == SourceProgress(offset=9)


async def test_after_a_move_replays_are_recognised_and_a_commit_ahead_of_the_state_is_filled(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """A new owner restores progress 4: offsets 2..4 redelivered from an older commit are replays; if instead the
    committed offset ran ahead to 8, offsets 5..7 are read back first."""
    topic = kafka_topics(unique_name("move"))
    await produce(kafka_bootstrap, topic, [f"m{i}".encode() for i in range(10)])
    records = await read_all(kafka_bootstrap, topic)
    restored: dict[bytes, bytes] = {}
    Store(restored).put_progress("events", 0, SourceProgress(offset=4))
    reader = reader_for(kafka_bootstrap)
    try:
        replaying = await run_consumer(tracker_for(topic, dict(restored)), reader, records[2:])
        ahead = await run_consumer(tracker_for(topic, dict(restored)), reader, records[8:])
    finally:
        await reader.aclose()
    assert replaying[:3] == [(2, "replay"), (3, "replay"), (4, "replay")] and replaying[3] == (5, "next")
    assert ahead == [(5, "recovered"), (6, "recovered"), (7, "recovered"), (8, "gap"), (9, "next")]


async def test_without_progress_the_committed_offset_is_the_position(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """State from before progress records (or a lost one): the group's committed offset is the baseline, so a
    first delivery beyond it is still a gap."""
    topic = kafka_topics(unique_name("baseline"))
    await produce(kafka_bootstrap, topic, [f"m{i}".encode() for i in range(6)])
    records = await read_all(kafka_bootstrap, topic)
    reader = reader_for(kafka_bootstrap)
    try:
        seen = await run_consumer(tracker_for(topic, {}, committed=2), reader, records[4:])
    finally:
        await reader.aclose()
    assert seen == [(2, "recovered"), (3, "recovered"), (4, "gap"), (5, "next")]


async def test_offsets_without_records_are_confirmed_empty(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """Transactional writes leave a commit marker after each record: the jump over a marker is read back and
    found empty (nothing processed twice, nothing invented)."""
    topic = kafka_topics(unique_name("markers"))
    await produce(kafka_bootstrap, topic, [b"t0", b"t1", b"t2"], transactional=True)
    records = await read_all(kafka_bootstrap, topic)
    assert [r.offset for r in records] == [0, 2, 4]  # 1, 3 and 5 are commit markers
    reader = reader_for(kafka_bootstrap)
    try:
        filled = await fill_gap(reader, records[2], 1, _never)
    finally:
        await reader.aclose()
    assert (filled.recovered, filled.empty, filled.expired) == (1, 2, 0)  # offset 2 is a record, 1 and 3 markers


async def _never(record: SourceRecord) -> None:
    assert record.offset == 2, f"only offset 2 holds a record, got {record.offset}"


async def test_offsets_deleted_by_retention_are_counted_not_read(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """A gap reaching below the log start (retention deleted those records while the partition had no owner)
    is read from the log start on; the deleted offsets are counted as expired instead of failing the worker."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    topic = kafka_topics(unique_name("expired"))
    await produce(kafka_bootstrap, topic, [f"m{i}".encode() for i in range(10)])
    records = await read_all(kafka_bootstrap, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=5)})
    finally:
        await admin.close()
    seen: list[int] = []

    async def process(record: SourceRecord) -> None:
        seen.append(record.offset)

    reader = reader_for(kafka_bootstrap)
    try:
        filled = await fill_gap(reader, records[8], 2, process)
    finally:
        await reader.aclose()
    assert seen == [5, 6, 7]
    assert (filled.recovered, filled.empty, filled.expired) == (3, 0, 3)
