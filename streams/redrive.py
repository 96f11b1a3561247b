"""`prefstream redrive`: retry the model updates of parked users.

A parked user keeps its evidence in the worker's `pending` table; unparking is a state change, so it
must happen inside the stream like every other write. This command therefore produces a `Redrive`
record to the internal results topic: for the named users, to the partition that owns each; for all
parked users, one record to every partition. The owning worker resets the user's attempts and the
scheduler asks the model again.
"""

from __future__ import annotations

import argparse
import time

from prefstream.settings import Settings


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("user_ids", nargs="*", help="users to redrive (default: every parked user)")
    parser.add_argument("--tenant", default=None, help="the tenant of the named users (default: none)")


def send_redrive(settings: Settings, user_ids: list[str]) -> int:
    """Produce the redrive records; returns how many were sent."""
    from kafka import KafkaProducer

    from prefstream.kafka.security import client_errors, kafka_python_kwargs
    from prefstream.streams.topology import internal_topics
    from prefstream.streams.partitioning import partition_for
    from prefstream.streams.records import Redrive, encode

    topic = internal_topics(settings)["results"]
    partitions = settings.topics.partitions
    now = int(time.time() * 1000)
    by_partition: dict[int, list[str]] = {}
    if user_ids:
        for user_id in user_ids:
            by_partition.setdefault(partition_for(user_id, partitions), []).append(user_id)
    else:
        by_partition = {p: [] for p in range(partitions)}
    with client_errors(settings.kafka):
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", **kafka_python_kwargs(settings.kafka)
        )
        try:
            for partition, users in sorted(by_partition.items()):
                record = Redrive(user_ids=tuple(users), requested_ms=now)
                producer.send(topic, key=(users[0] if len(users) == 1 else "*").encode(), value=encode(record),
                              partition=partition)  # fmt: skip
            producer.flush()
        finally:
            producer.close()
    return len(by_partition)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    from prefstream.schemas.keys import user_key

    sent = send_redrive(settings, [user_key(args.tenant, u) for u in args.user_ids])
    target = f"{len(args.user_ids)} user(s)" if args.user_ids else "every parked user"
    print(f"redrive: {sent} record(s) sent for {target}")
    return 0
