"""The sync and asyncio producers on the real broker: the worker's partitioner, validation, safe failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from prefstream.client import (
    AsyncProducer,
    BufferFullError,
    ClientConfig,
    DeliveryError,
    EventRejected,
    Producer,
    TopicMissingError,
    events,
)
from prefstream.errors import KafkaConnectError
from prefstream.schemas.errors import RejectCode
from prefstream.streams.partitioning import partition_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
USERS = [f"user-{i}" for i in range(40)] + ["a@b.example", "x:y+z=1", "U.-_"]


@pytest.fixture
def config(kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]) -> ClientConfig:
    """A client configuration whose events topic is a fresh 4-partition topic."""
    topic = kafka_topics(unique_name("events"), partitions=PARTITIONS)
    return ClientConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PREFSTREAM_EVENTS_TOPIC": topic})


def _stored(config: ClientConfig, expected: int) -> dict[str, int]:
    """event_id -> partition of every record on the events topic (waits for `expected` records)."""
    consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(config.topics.events, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        found: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # at least one poll, also when nothing is expected
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    assert r.key is not None
                    found[r.value.split(b'"event_id":"')[1].split(b'"')[0].decode()] = tp.partition
            if len(found) >= expected:
                break
        return found
    finally:
        consumer.close()


def test_partitioner_is_the_workers_and_kafkas_default() -> None:
    """partition_for is murmur2 as kafka-python's and aiokafka's default partitioners (Java's) compute it."""
    for user in USERS:
        key = user.encode()
        assert partition_for(user, PARTITIONS) == (kafka_python_murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        assert partition_for(user, PARTITIONS) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % PARTITIONS
    assert len({partition_for(u, PARTITIONS) for u in USERS}) == PARTITIONS  # the sample reaches every partition


def test_sync_producer_keys_and_partitions_like_the_worker(config: ClientConfig) -> None:
    """Every event is stored keyed by user_id on the partition the worker owns for that user."""
    with Producer(config) as producer:
        deliveries = [producer.send(events.pair(u, f"sync-{i}", chosen="a", rejected="b")) for i, u in enumerate(USERS)]
        producer.flush()
        results = [d.result() for d in deliveries]
    assert [r.partition for r in results] == [partition_for(u, PARTITIONS) for u in USERS]
    assert _stored(config, len(USERS)) == {f"sync-{i}": partition_for(u, PARTITIONS) for i, u in enumerate(USERS)}


def test_async_producer_keys_and_partitions_like_the_worker(config: ClientConfig) -> None:
    """The asyncio producer stores every event where the sync one does."""

    async def main() -> list[int]:
        async with AsyncProducer(config) as producer:
            futures = [await producer.send(events.pair(u, f"async-{i}", chosen="a", rejected="b"))
                       for i, u in enumerate(USERS)]  # fmt: skip
            last = await producer.send_and_wait(events.forget(USERS[0], "async-forget"))
            assert last.partition == partition_for(USERS[0], PARTITIONS)
            return [(await f).partition for f in futures]

    assert asyncio.run(main()) == [partition_for(u, PARTITIONS) for u in USERS]
    assert len(_stored(config, len(USERS) + 1)) == len(USERS) + 1


def test_one_megabyte_event_fails_in_both_producers(config: ClientConfig) -> None:
    """A 1 MB event raises `EventRejected` (too_large) in the app; nothing reaches the broker."""
    big = events.text("u-1", "big", text="x" * 1_048_576)
    with Producer(config) as producer:
        assert producer.max_message_bytes == 1_048_588  # the broker's default, read from the topic
        with pytest.raises(EventRejected) as caught:
            producer.send(big)
    assert caught.value.code == RejectCode.TOO_LARGE

    async def main() -> None:
        async with AsyncProducer(config) as producer:
            with pytest.raises(EventRejected):
                await producer.send(big)

    asyncio.run(main())
    assert _stored(config, 0) == {}


def test_missing_topic_is_one_clear_error(config: ClientConfig) -> None:
    """A missing events topic fails at start, naming the topic and `prefstream topics ensure`."""
    missing = ClientConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": config.kafka.bootstrap_servers,
                                     "PREFSTREAM_EVENTS_TOPIC": config.topics.events + "-missing"})  # fmt: skip
    with pytest.raises(TopicMissingError, match=r"-missing does not exist .*prefstream topics ensure"):
        Producer(missing, max_block_s=2)
    with pytest.raises(TopicMissingError, match=r"-missing does not exist"):
        asyncio.run(AsyncProducer(missing).start())


def test_unreachable_broker_is_one_clear_error() -> None:
    """No broker at the address: one `KafkaConnectError` line naming it and why, within the connect timeout."""
    nowhere = ClientConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "PREFSTREAM_KAFKA_CONNECT_TIMEOUT_S": "2"})
    started = time.monotonic()
    with pytest.raises(KafkaConnectError, match=r"^cannot reach Kafka at 127.0.0.1:9 \(127.0.0.1:9: connection refused\); check KAFKA_BOOTSTRAP_SERVERS"):
        Producer(nowhere)
    with pytest.raises(KafkaConnectError, match=r"^cannot reach Kafka at 127.0.0.1:9 \(127.0.0.1:9: connection refused\); check KAFKA_BOOTSTRAP_SERVERS"):
        asyncio.run(AsyncProducer(nowhere).start())
    assert time.monotonic() - started < 20


def test_buffer_is_bounded(config: ClientConfig) -> None:
    """With more unacknowledged bytes than `max_buffered_bytes`, send() blocks `max_block_s`, then says so."""
    # linger_ms holds the first event in the producer for 3 s: it stays unacknowledged while the second waits.
    with Producer(config, linger_ms=3000, max_buffered_bytes=10, max_block_s=0.3) as producer:
        producer.send(events.forget("u-1", "first"))
        started = time.monotonic()
        with pytest.raises(BufferFullError, match=r"wait for the broker's acknowledgement \(max_buffered_bytes 10\)"):
            producer.send(events.forget("u-1", "second"))
        assert 0.3 <= time.monotonic() - started < 2.5
        producer.flush()
        producer.send(events.forget("u-1", "third"))  # room again once the first was acknowledged


def test_delivery_errors_are_surfaced(config: ClientConfig) -> None:
    """Events the broker never acknowledges raise `DeliveryError` from flush(), naming them, within the
    delivery timeout (and 5 s); leaving the block stops the producer's network thread."""
    from kafka import KafkaAdminClient

    with pytest.raises(DeliveryError) as caught:
        with Producer(config, delivery_timeout_s=3) as producer:
            admin = KafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers)
            admin.delete_topics([config.topics.events])
            admin.close()
            producer.send(events.forget("u-1", "lost-1"))
            producer.send(events.forget("u-2", "lost-2"))
            started = time.monotonic()
            sender = producer._producer._sender  # kafka-python's network thread
            producer.flush()
    assert time.monotonic() - started < 3 + 5 + 5
    assert not sender.is_alive(), "the abandoned producer's network thread lives on (it retries and logs forever)"
    assert set(caught.value.event_ids) == {"lost-1", "lost-2"}
    assert "2 events (first lost-" in str(caught.value) and "not delivered to" in str(caught.value)
