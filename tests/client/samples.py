"""Sample events for the client tests."""

from __future__ import annotations

from kafka import KafkaProducer

from prefstream.client import events
from prefstream.schemas.events import Event, Item
from prefstream.schemas.profiles import Profile, encode_profile
from prefstream.streams.partitioning import partition_for

#: Partitions of the profiles topics the reader tests make.
PARTITIONS = 3


def every_kind(user: str, prefix: str = "e") -> list[Event]:
    """One event of every kind built with the client's builders (the forget last)."""
    return [
        events.pair(user, f"{prefix}-pair", chosen="Build a small project.", rejected="Read the manual first.",
                    query="How to learn a language?", source="tests"),
        events.impression(user, f"{prefix}-imp", shown=["Title: A", Item(text="Title: B", item_id="b")], clicked=[1],
                          domain="news"),
        events.engagement(user, f"{prefix}-eng", item=Item(text="Title: Dune", item_id="b-7"),
                          negatives=["Title: Cooking for One"], domain="books", meta={"action": "purchase"}),
        events.rating(user, f"{prefix}-rat", item="Title: Pulp Fiction (1994)", score=4.5, scale=5, domain="movies"),
        events.text(user, f"{prefix}-txt", text="Brews a clean cup.", context="Review the coffee maker."),
        events.conversation(user, f"{prefix}-conv", turns=[("user", "A weekend trip? Not beaches."),
                                                            ("assistant", "Hiking in the Dolomites?")]),
        events.forget(user, f"{prefix}-forget"),
    ]  # fmt: skip


def profile(user: str, epoch: int, version: int) -> Profile:
    """A profile record as a worker publishes it."""
    return Profile(schema_version=1, user_id=user, epoch=epoch, version=version, summary=f"{user} {epoch}.{version}",
                   events_applied=version, updated_at="2026-01-01T00:00:00.000Z", last_event_ts="2026-01-01T00:00:00Z",
                   model="m", prompt_version="p", backend="ledger")  # fmt: skip


class ProfileTopic:
    """Publishes profile records and tombstones the way workers do (keyed, on the user's partition)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
        self.topic = topic
        self.partitions = partitions
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def publish(self, user: str, record: Profile | None) -> None:
        value = None if record is None else encode_profile(record)
        self._producer.send(self.topic, key=user.encode(), value=value, partition=partition_for(user, self.partitions))
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()
