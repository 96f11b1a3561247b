"""`ClientConfig`: the settings an app needs, read from the same environment variables as the worker.

Only the sections a client uses are read (Kafka connection and security, topic names, event limits, where
the read API is), so an app's environment needs none of the worker's model or flush settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from prefstream.settings import KafkaSettings, LimitSettings, TopicSettings, WorkerSettings, load_section


@dataclass(frozen=True)
class ClientConfig:
    """Where Kafka is, which topics to use, the event limits the worker enforces and the read API's URL."""

    kafka: KafkaSettings
    topics: TopicSettings
    limits: LimitSettings
    #: Base URL of a worker's HTTP server (any worker: it routes to the one owning the user).
    api_url: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ClientConfig:
        """Read KAFKA_BOOTSTRAP_SERVERS, PREFSTREAM_*_TOPIC, PREFSTREAM_MAX_* and the worker's web host and port."""
        env = os.environ if environ is None else environ
        worker = load_section(WorkerSettings, env)
        config = cls(
            kafka=load_section(KafkaSettings, env),
            topics=load_section(TopicSettings, env),
            limits=load_section(LimitSettings, env),
            api_url=f"http://{worker.web_host}:{worker.web_port}",
        )
        return replace(config, **overrides) if overrides else config  # type: ignore[arg-type]
