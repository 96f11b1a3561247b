"""Session-wide fixtures: one real Kafka broker per test session, unique topics per test.

The broker is started from the project's own runner on free loopback ports in a temporary directory,
so a developer's broker or a crashed run's leftovers never leak in. Set `KAFKA_BOOTSTRAP_SERVERS` to
run the suite against an existing broker instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from prefstream import logs

# One logging set-up for the session, writing to whatever stderr pytest has installed at the time.
logs.configure("console", "info")

hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real Kafka broker for this test session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    from prefstream.kafka import local

    root = tmp_path_factory.mktemp("kafka")
    with local.running(root) as cluster:
        yield cluster.bootstrap_servers


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make names (topics, app ids, groups) unique to this test and run."""
    token = uuid.uuid4().hex[:8]
    base = request.node.name.split("[")[0][-40:].replace("_", "-")

    def make(prefix: str) -> str:
        return f"{prefix}.{base}.{token}"

    return make


@pytest.fixture
def kafka_topics(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create topics for one test; every topic created here is deleted afterwards."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    created: list[str] = []

    def create(name: str, partitions: int = 1, configs: dict[str, str] | None = None) -> str:
        admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}},
            wait_for_metadata=True,
        )
        created.append(name)
        return name

    yield create
    if created:
        admin.delete_topics(created, raise_errors=False)
    admin.close()


@pytest.fixture
def test_env(kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> dict[str, str]:
    """Environment for a prefstream process isolated to this test: own topics, app id and data dir."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PREFSTREAM_EVENTS_TOPIC": unique_name("events"),
        "PREFSTREAM_PROFILES_TOPIC": unique_name("profiles"),
        "PREFSTREAM_DLQ_TOPIC": unique_name("dlq"),
        "PREFSTREAM_FAILURES_TOPIC": unique_name("failures"),
        "PREFSTREAM_UPDATES_TOPIC": unique_name("updates"),
        "PREFSTREAM_APP_ID": unique_name("app"),
        "PREFSTREAM_DATA_DIR": str(tmp_path / "data"),
        "PREFSTREAM_PARTITIONS": "2",
        "PREFSTREAM_LOG_FORMAT": "console",
    }
