"""The profile readers on the real broker: the latest profile per user, changes as they come, tombstones honoured."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from prefstream.client import AsyncProfileReader, ClientConfig, ProfileChange, ProfileReader, TopicMissingError
from tests.client.samples import PARTITIONS, ProfileTopic, profile

pytestmark = pytest.mark.kafka


@pytest.fixture
def config(kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]) -> ClientConfig:
    """A client configuration whose profiles topic is a fresh compacted topic."""
    topic = kafka_topics(unique_name("profiles"), partitions=PARTITIONS, configs={"cleanup.policy": "compact"})
    return ClientConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PREFSTREAM_PROFILES_TOPIC": topic})


@pytest.fixture
def published(config: ClientConfig) -> ProfileTopic:
    """The history every reader test starts from: two users, one re-published record, one forgotten user."""
    topic = ProfileTopic(config.kafka.bootstrap_servers, config.topics.profiles)
    for user, record in [("u-1", profile("u-1", 1, 1)), ("u-1", profile("u-1", 1, 2)), ("u-1", profile("u-1", 1, 2)),
                         ("u-2", profile("u-2", 1, 1)), ("u-3", profile("u-3", 1, 5)), ("u-3", None),
                         ("u-3", profile("u-3", 1, 5))]:  # fmt: skip
        topic.publish(user, record)
    return topic


def test_sync_reader_catches_up_then_follows(config: ClientConfig, published: ProfileTopic) -> None:
    """catch_up() holds every current profile (forgotten users absent); changes() then yields new ones, and
    `on_change` sees every change."""
    seen: list[ProfileChange] = []
    try:
        with ProfileReader(config, on_change=seen.append) as reader:
            assert reader.catch_up(timeout_s=30) == 2
            assert reader.get("u-1") == profile("u-1", 1, 2)
            assert reader.get("u-2") == profile("u-2", 1, 1)
            assert reader.get("u-3") is None
            published.publish("u-2", profile("u-2", 1, 2))
            published.publish("u-1", None)
            published.publish("u-4", profile("u-4", 2, 1))
            followed = []
            for change in reader.changes(idle_timeout_s=10):
                followed.append((change.user_id, change.profile))
                if len(followed) == 3:
                    break
    finally:
        published.close()
    assert sorted(followed, key=lambda c: c[0]) == [("u-1", None), ("u-2", profile("u-2", 1, 2)),
                                                     ("u-4", profile("u-4", 2, 1))]  # fmt: skip
    assert [c.user_id for c in seen].count("u-3") == 2  # published, then forgotten; the stale repeat is no change
    assert reader.get("u-1") is None


def test_reader_from_now_sees_only_new_updates(config: ClientConfig, published: ProfileTopic) -> None:
    """`from_beginning=False` starts at the end: only updates published afterwards appear."""
    try:
        with ProfileReader(config, from_beginning=False) as reader:
            assert reader.catch_up(timeout_s=30) == 0
            published.publish("u-5", profile("u-5", 1, 1))
            change = next(reader.changes(idle_timeout_s=10))
    finally:
        published.close()
    assert change.user_id == "u-5" and reader.get("u-1") is None


def test_async_reader_iterates_changes(config: ClientConfig, published: ProfileTopic) -> None:
    """The asyncio reader catches up like the sync one and yields new changes from `async for`."""

    async def main() -> tuple[int, list[str]]:
        async with AsyncProfileReader(config) as reader:
            users = await reader.catch_up(timeout_s=30)
            assert reader.get("u-1") == profile("u-1", 1, 2) and reader.get("u-3") is None
            await asyncio.to_thread(published.publish, "u-6", profile("u-6", 1, 1))
            followed = []
            async for change in reader.changes(idle_timeout_s=10):
                followed.append(change.user_id)
                break
            return users, followed

    try:
        assert asyncio.run(main()) == (2, ["u-6"])
    finally:
        published.close()


def test_missing_profiles_topic_is_one_clear_error(config: ClientConfig) -> None:
    """A missing profiles topic fails at start, naming it (both readers)."""
    missing = ClientConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": config.kafka.bootstrap_servers,
                                     "PREFSTREAM_PROFILES_TOPIC": config.topics.profiles + "-missing"})  # fmt: skip
    with pytest.raises(TopicMissingError, match=r"-missing does not exist .*PREFSTREAM_PROFILES_TOPIC"):
        ProfileReader(missing)
    with pytest.raises(TopicMissingError, match=r"-missing does not exist"):
        asyncio.run(AsyncProfileReader(missing).start())
