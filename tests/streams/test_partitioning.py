"""murmur2 partitioning matches Kafka's Java client."""

from __future__ import annotations

from prefstream.streams.partitioning import partition_for


def test_matches_java_murmur2_vectors() -> None:
    """Known Java values: Utils.murmur2("21".getBytes()) == -973932308; toPositive % n selects the partition."""
    assert partition_for("21", 1 << 31) == (-973932308) & 0x7FFFFFFF
    # kafka-python's independent implementation agrees on a spread of keys.
    from kafka.partitioner.default import murmur2 as kp_murmur2

    for key in ["", "a", "user-1", "ünïcode", "x" * 200]:
        assert partition_for(key, 12) == (kp_murmur2(key.encode()) & 0x7FFFFFFF) % 12
