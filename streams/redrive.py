"""`prefstream redrive [USER...]`: retry the model updates of parked users, and say which were retried.

A parked user keeps its evidence in the worker's state; unparking is a state change, so it must happen
inside the stream like every other write. The command first asks a worker's read API which users are
parked (`GET /parked`), then produces one `Redrive` record naming them to each partition that owns
some, on the internal results topic; the owning worker resets their attempts and the scheduler asks
the model again. A named user who is not parked is reported, not silently "redriven".

Exit codes: 0 when every named user (or every parked user) was redriven, or none is parked and none was
named; 1 when a named user is not parked; 2 when the read API or Kafka cannot be reached.
"""

from __future__ import annotations

import argparse
import time

from prefstream.settings import Settings
from prefstream.streams import readapi
from prefstream.streams.userstate import ParkedList


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("user_ids", nargs="*", metavar="USER", help="users to redrive (default: every parked user)")
    parser.add_argument("--api", metavar="URL", help="a worker's read API (default: PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT)")
    parser.add_argument("--tenant", default=None, help="the tenant of the named users (default: none)")


def send_redrive(settings: Settings, users_by_partition: dict[int, list[str]]) -> None:
    """Produce one redrive record per partition, naming its users."""
    from kafka import KafkaProducer

    from prefstream.kafka.security import client_errors, kafka_python_kwargs
    from prefstream.streams.records import Redrive, encode
    from prefstream.streams.topology import internal_topics

    topic = internal_topics(settings)["results"]
    now = int(time.time() * 1000)
    with client_errors(settings.kafka):
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", **kafka_python_kwargs(settings.kafka)
        )
        try:
            for partition, users in sorted(users_by_partition.items()):
                record = Redrive(user_ids=tuple(users), requested_ms=now)
                producer.send(topic, key=(users[0] if len(users) == 1 else "*").encode(), value=encode(record),
                              partition=partition)  # fmt: skip
            producer.flush()
        finally:
            producer.close()


def plan(listing: ParkedList, named: list[str]) -> tuple[dict[int, list[str]], list[str]]:
    """Pure: which parked users to redrive, by partition, and which named users are not parked."""
    parked = {s.user_id: s.partition for s in listing.parked}
    wanted = list(dict.fromkeys(named)) if named else sorted(parked)
    by_partition: dict[int, list[str]] = {}
    for user_id in wanted:
        if user_id in parked:
            by_partition.setdefault(parked[user_id], []).append(user_id)
    return by_partition, [u for u in wanted if u not in parked]


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    listing = readapi.get(args.api or readapi.default_url(settings), "/parked", ParkedList)
    from prefstream.schemas.keys import user_key

    # A tenant's users are parked under their user key, `tenant/user_id` (docs/streams.md, "Tenants").
    by_partition, not_parked = plan(listing, [user_key(args.tenant, u) for u in args.user_ids])
    redriven = sorted(u for users in by_partition.values() for u in users)
    if by_partition:
        send_redrive(settings, by_partition)
        shown = ", ".join(redriven[:10]) + (f" and {len(redriven) - 10} more" if len(redriven) > 10 else "")
        print(f"redrive: {len(redriven)} parked user(s) retried ({shown}); their pending events go to the model again")
    elif not args.user_ids:
        print("redrive: no parked users; nothing to do")
    for user_id in not_parked:
        print(f"redrive: {user_id}: not parked; nothing to redrive (`prefstream parked` lists parked users)")
    if listing.unreachable:
        print(f"redrive: incomplete: no answer from {', '.join(listing.unreachable)}; run it again when they are up")
    return 1 if not_parked or listing.unreachable else 0
