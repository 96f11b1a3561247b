"""Which partition owns a user: murmur2 of the UTF-8 user id, as Kafka's Java client does by default.

Every table, internal topic and the profiles topic use this one function, and records prefstream
writes always name their partition explicitly. Producers whose default partitioner differs
(librdkafka: CRC32 `consistent_random`; Sarama: FNV-1a) land events elsewhere; the ingest stage
forwards those to the owning partition (docs/streams.md, "Partitioning").
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

__all__ = ["partition_for"]


def partition_for(user_id: str, partitions: int) -> int:
    """The partition that owns `user_id`: `toPositive(murmur2(key)) % partitions` (Kafka's Java default)."""
    return (murmur2(user_id.encode("utf-8")) & 0x7FFFFFFF) % partitions
