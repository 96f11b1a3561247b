"""The worker's topology: internal topic names and settings, and every faust option it runs with.

All topics have PREFSTREAM_PARTITIONS partitions and key = UTF-8 user id; records prefstream writes
name their partition, murmur2(user_id) % P:

    events ─────────┐
    {id}-repartition ├─> agent `state` ──> table `state` (RocksDB, changelogged)
    {id}-results ────┤        ├─> dead letters, repartitioned events, profiles, failure records
    {id}-backfill ───┘        │   (histories from `prefstream backfill`, `streams.backfill_ingest`)
                              └─> reports to the fold scheduler ──> model ──> {id}-results
"""

from __future__ import annotations

from typing import Any

from prefstream.kafka.security import faust_credentials
from prefstream.schemas.deadletter import DLQ_MAX_MESSAGE_BYTES
from prefstream.settings import Settings
from prefstream.topics import TopicSpec, compacted_configs

__all__ = ["faust_options", "internal_topic_specs", "internal_topics", "legacy_changelogs"]

#: The one state table (`streams.store`); its changelog is `{app_id}-state-changelog`.
STATE_TABLE = "state"
#: The tables of releases before 0.2.0 (`prefstream state migrate` moves them into STATE_TABLE).
LEGACY_TABLES = ("meta", "pending", "profile")
#: Small RocksDB caches: one DB per partition per worker on a small machine (faust's default is 2 GiB each).
ROCKSDB_OPTIONS = {
    "block_cache_size": 32 * 1024**2,
    "block_cache_compressed_size": 8 * 1024**2,
    "write_buffer_size": 8 * 1024**2,
    "max_write_buffer_number": 2,
}


def internal_topics(settings: Settings) -> dict[str, str]:
    """Names of prefstream's internal topics (faust's app id is their prefix)."""
    app_id = settings.worker.app_id
    names = {"repartition": f"{app_id}-repartition", "results": f"{app_id}-results", "backfill": f"{app_id}-backfill"}
    names["state"] = f"{app_id}-{STATE_TABLE}-changelog"
    return names


def legacy_changelogs(settings: Settings) -> list[str]:
    """The changelog topics of the state layout before 0.2.0."""
    return [f"{settings.worker.app_id}-{table}-changelog" for table in LEGACY_TABLES]


def internal_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The internal topics, for `prefstream.topics.check_topics`: created before faust starts, with
    short retention (they carry user text in transit), and checked for the fixed partition count."""
    p, rf = settings.topics.partitions, settings.kafka.replication_factor
    names = internal_topics(settings)
    transit = {"cleanup.policy": "delete", "retention.ms": str(settings.topics.internal_retention_ms)}
    changelog = compacted_configs(settings.topics)
    # A history waits here until the worker takes it: kept as long as live events are.
    history = {"cleanup.policy": "delete", "retention.ms": str(settings.topics.events_retention_ms)}
    return [
        TopicSpec(names["repartition"], p, rf, transit),
        TopicSpec(names["results"], p, rf, transit),
        TopicSpec(names["backfill"], p, rf, history),
        TopicSpec(names["state"], p, rf, changelog, strict=("cleanup.policy",)),
    ]


def faust_options(settings: Settings) -> dict[str, Any]:
    """Every faust setting we rely on, passed explicitly (faust reads no environment variable: `env={}`)."""
    w, p = settings.worker, settings.topics.partitions
    return {
        "env": {},  # faust must not pick up WEB_PORT, BROKER_URL, APP_ENV_PREFIX, ... from the environment
        "id_format": "{id}",  # the app id is the consumer group and the internal topic prefix, verbatim
        "autodiscover": False,
        "broker": settings.kafka.faust_broker,
        "broker_credentials": faust_credentials(settings.kafka),  # None for PLAINTEXT
        "broker_client_id": settings.kafka.client_id,
        "store": "rocksdb://",
        "datadir": str(w.data_dir / "faust"),
        "processing_guarantee": "at_least_once",
        "topic_partitions": p,
        "topic_replication_factor": settings.kafka.replication_factor,
        "table_standby_replicas": w.standby_replicas,
        "broker_session_timeout": w.session_timeout_s,
        "broker_heartbeat_interval": w.heartbeat_interval_s,
        "broker_rebalance_timeout": w.rebalance_timeout_s,
        "broker_request_timeout": max(90.0, w.session_timeout_s + 10.0),
        "broker_commit_interval": w.commit_interval_s,
        "broker_max_poll_records": 500,
        # A dead letter carries the rejected message verbatim: as large as an app's producer may send.
        "producer_max_request_size": DLQ_MAX_MESSAGE_BYTES,
        "stream_buffer_maxsize": 1024,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": True,
        "web_port": w.web_port,
        "web_bind": w.web_bind,
        "web_host": w.web_host,
        "canonical_url": f"http://{w.web_host}:{w.web_port}",
        # Raw table contents, the graph, stats and the router's host map are not served.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
        "debug": False,
    }
