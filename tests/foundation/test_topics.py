"""Topics are created on purpose, and the worker's gate refuses broken layouts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from prefstream.errors import TopicMismatchError
from prefstream.settings import Settings
from prefstream.topics import check_topics, ensure_topics, required_topics

pytestmark = pytest.mark.kafka


def _settings(test_env: dict[str, str]) -> Settings:
    return Settings.from_env(test_env)


def test_ensure_creates_then_reports_ok(test_env: dict[str, str], kafka_topics: Callable[..., str]) -> None:
    """The first ensure creates every public topic; the second finds them all as specified."""
    settings = _settings(test_env)
    first = ensure_topics(settings)
    assert [r.name for r in first] == [settings.topics.events, settings.topics.profiles, settings.topics.dlq,
                                       settings.topics.failures, settings.topics.updates]  # fmt: skip
    assert [r.action for r in first] == ["created"] * 5
    second = ensure_topics(settings)
    assert [r.action for r in second] == ["ok"] * 5, [str(r) for r in second]
    _delete(settings)


def test_gate_refuses_a_profiles_topic_that_is_not_compacted(
    test_env: dict[str, str], kafka_topics: Callable[..., str]
) -> None:
    """A profiles topic with time retention would lose profiles: the worker refuses to start."""
    settings = _settings(test_env)
    kafka_topics(settings.topics.profiles, partitions=2, configs={"cleanup.policy": "delete"})
    with pytest.raises(TopicMismatchError, match="cleanup.policy=delete, expected compact"):
        check_topics(settings)
    _delete(settings)


def test_gate_refuses_a_changed_partition_count(test_env: dict[str, str], kafka_topics: Callable[..., str]) -> None:
    """Users' state is placed by partition: a different count than configured refuses start-up."""
    settings = _settings(test_env)
    kafka_topics(settings.topics.events, partitions=3)
    with pytest.raises(TopicMismatchError, match="partitions 3, expected 2"):
        check_topics(settings)
    _delete(settings)


def _delete(settings: Settings) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.delete_topics([s.name for s in required_topics(settings)], raise_errors=False)
    admin.close()
