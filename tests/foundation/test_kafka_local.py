"""The project's own Kafka runner: fetch once, start, reuse, stop exactly what it started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from prefstream.kafka import local

pytestmark = pytest.mark.kafka


def test_session_broker_accepts_clients(kafka_bootstrap: str) -> None:
    """The session broker answers metadata requests and refuses to auto-create topics."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import KafkaTimeoutError

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    assert admin.describe_cluster()["brokers"]
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_block_ms=1500)
    with pytest.raises(KafkaTimeoutError):
        producer.send("prefstream.no-such-topic", b"x").get(timeout=3)
    producer.close()


def test_fetch_is_cached() -> None:
    """A second fetch finds the checked jars in the cache and does not run Maven."""
    lib = local.fetch()
    assert (lib / f"kafka_2.13-{local.KAFKA_VERSION}.jar").exists()
    assert (lib / ".complete").read_text().count(".jar") > 20
    assert local.fetch() == lib


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="uses its own broker")
def test_up_is_idempotent_and_down_stops_exactly_it(tmp_path: Path) -> None:
    """start() twice reuses the running broker; stop() ends exactly the process it recorded."""
    first = local.start(tmp_path)
    try:
        again = local.start(tmp_path)
        assert again.reused and again.nodes == first.nodes
        pid = first.nodes[0].pid
        assert local._alive(pid)
    finally:
        assert local.stop(tmp_path)
    assert not local._alive(pid)
    assert local.LocalCluster.load(tmp_path) is None
    assert local.stop(tmp_path) is False


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="uses its own brokers")
def test_three_node_cluster_survives_a_killed_node(tmp_path: Path) -> None:
    """A 3-node KRaft cluster keeps serving with one node killed, and takes it back after a restart."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    cluster = local.start(tmp_path, nodes=3, heap="384m")
    try:
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
        admin.create_topics({"t": {"num_partitions": 3, "replication_factor": 3}}, wait_for_metadata=True)
        admin.close()
        local.stop_node(cluster, cluster.nodes[2], kill=True)
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", retries=20)
        sent = [producer.send("t", key=str(i).encode(), value=b"v") for i in range(30)]
        for future in sent:
            future.get(timeout=60)  # acknowledged by the in-sync replicas of the two live nodes
        producer.close()
        cluster = local.restart_node(cluster, cluster.nodes[2])
        local.wait_ready(cluster.bootstrap_servers, 3)
        consumer = KafkaConsumer("t", bootstrap_servers=cluster.bootstrap_servers, auto_offset_reset="earliest",
                                 enable_auto_commit=False)
        seen: set[bytes] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 30 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                seen.update(r.key for r in records)
        consumer.close()
        assert len(seen) == 30
    finally:
        local.stop(tmp_path, timeout=5)


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="uses its own broker")
def test_restart_keeps_topics_and_records_and_reset_wipes_them(tmp_path: Path) -> None:
    """down then up on the same root keeps every topic and record; reset=True starts from empty storage."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    def topics(bootstrap: str) -> set[str]:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            return set(admin.list_topics())
        finally:
            admin.close()

    def records(bootstrap: str) -> list[bytes]:
        consumer = KafkaConsumer("kept", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=5000)  # fmt: skip
        try:
            return [m.value for m in consumer]
        finally:
            consumer.close()

    first = local.start(tmp_path)
    try:
        assert not first.kept_data
        admin = KafkaAdminClient(bootstrap_servers=first.bootstrap_servers)
        admin.create_topics({"kept": {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
        admin.close()
        producer = KafkaProducer(bootstrap_servers=first.bootstrap_servers, acks="all")
        producer.send("kept", key=b"k", value=b"still here").get(timeout=30)
        producer.close()
    finally:
        assert local.stop(tmp_path)
    assert local.has_data(tmp_path)

    second = local.start(tmp_path)  # new (free) ports, same data
    try:
        assert second.kept_data and not second.reused
        assert "kept" in topics(second.bootstrap_servers)
        assert records(second.bootstrap_servers) == [b"still here"]
        third = local.start(tmp_path, reset=True)  # stops the running broker, wipes, starts afresh
        assert not third.kept_data and not third.reused
        assert not local._alive(second.nodes[0].pid)
        assert "kept" not in topics(third.bootstrap_servers)
    finally:
        local.stop(tmp_path)
