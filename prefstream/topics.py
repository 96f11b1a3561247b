"""Topics, created on purpose.

The broker never auto-creates topics. `ensure_topics()` creates what is missing with the partitions,
replication, cleanup policy and retention prefstream needs, and reports every difference it finds on
topics that already exist; `check_topics()` is the worker's start-up gate: it refuses to run when the
profiles topic is not compacted or partition counts disagree, because both silently break the
per-user guarantees (a profile history that is deleted by time, or users whose state moved partition).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prefstream.errors import TopicMismatchError
from prefstream.schemas.deadletter import DLQ_MAX_MESSAGE_BYTES
from prefstream.settings import KafkaSettings, Settings, TopicSettings


@dataclass(frozen=True)
class TopicSpec:
    """What one topic must look like."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    strict: tuple[str, ...] = ()  # configs whose mismatch makes the worker refuse to start

    @property
    def compacted(self) -> bool:
        return self.configs.get("cleanup.policy") == "compact"


@dataclass(frozen=True)
class TopicReport:
    name: str
    action: str  # "created", "ok", "mismatch" or "missing" (inspect() only)
    problems: tuple[str, ...] = ()
    fatal: bool = False

    def __str__(self) -> str:
        detail = "; ".join(self.problems)
        return f"{self.name}: {self.action}" + (f" ({detail})" if detail else "")


def compacted_configs(topics: TopicSettings) -> dict[str, str]:
    """Configs of a compacted topic whose superseded records must disappear within a bounded time."""
    return {
        "cleanup.policy": "compact",
        "max.compaction.lag.ms": str(topics.max_compaction_lag_ms),
        "delete.retention.ms": str(topics.delete_retention_ms),
        # Roll segments at least as often as the lag bound: the active segment is never compacted.
        "segment.ms": str(topics.max_compaction_lag_ms),
        "min.cleanable.dirty.ratio": "0.1",
    }


def required_topics(settings: Settings) -> list[TopicSpec]:
    """The public topics every deployment has. Internal topics are declared by `streams.app`."""
    t, rf = settings.topics, settings.kafka.replication_factor
    p = t.partitions

    def retained(ms: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(ms)}

    return [
        TopicSpec(t.events, p, rf, retained(t.events_retention_ms)),
        TopicSpec(t.profiles, p, rf, compacted_configs(t), strict=("cleanup.policy",)),
        TopicSpec(t.dlq, p, rf, {**retained(t.dlq_retention_ms), "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}),
        TopicSpec(t.failures, p, rf, retained(t.failures_retention_ms)),
        TopicSpec(t.updates, p, rf, retained(t.updates_retention_ms)),
    ]


@contextmanager
def admin_client(kafka: KafkaSettings) -> Iterator[object]:
    """An admin client with the configured security; a failure to connect or act is one clear error."""
    from kafka import KafkaAdminClient

    from prefstream.kafka.security import client_errors, kafka_python_kwargs

    with client_errors(kafka):
        admin = KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers, client_id=f"{kafka.client_id}-admin", **kafka_python_kwargs(kafka)
        )
        try:
            yield admin
        finally:
            admin.close()


def _existing(admin: object, names: list[str]) -> dict[str, int]:
    from kafka.errors import UnknownTopicOrPartitionError, for_code

    found: dict[str, int] = {}
    for topic in admin.describe_topics(names):  # type: ignore[attr-defined]
        if topic["error_code"] == UnknownTopicOrPartitionError.errno:
            continue
        if topic["error_code"]:  # e.g. TopicAuthorizationFailed: never mistake it for a topic with 0 partitions
            raise for_code(topic["error_code"])()
        found[topic["topic"] if "topic" in topic else topic["name"]] = len(topic["partitions"])
    return found


def _configs(admin: object, names: list[str]) -> dict[str, dict[str, str]]:
    from kafka.admin import ConfigResource, ConfigResourceType

    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    described = admin.describe_configs(resources, config_filter="all")  # type: ignore[attr-defined]
    by_name = described.get("topic", {})
    return {name: {k: str(v.get("value")) for k, v in by_name.get(name, {}).items()} for name in names}


def compare(spec: TopicSpec, partitions: int, configs: dict[str, str]) -> TopicReport:
    """Pure: how an existing topic differs from its spec."""
    problems, fatal = [], False
    if partitions != spec.partitions:
        problems.append(f"partitions {partitions}, expected {spec.partitions}")
        fatal = True
    for key, want in spec.configs.items():
        have = configs.get(key)
        if have != want:
            problems.append(f"{key}={have}, expected {want}")
            fatal = fatal or key in spec.strict
    return TopicReport(spec.name, "mismatch" if problems else "ok", tuple(problems), fatal)


def ensure(specs: list[TopicSpec], kafka: KafkaSettings) -> list[TopicReport]:
    """Create missing topics; report the state of existing ones. Never alters an existing topic."""
    from kafka.errors import TopicAlreadyExistsError

    with admin_client(kafka) as admin:
        names = [s.name for s in specs]
        existing = _existing(admin, names)
        missing = [s for s in specs if s.name not in existing]
        if missing:
            try:
                admin.create_topics(  # type: ignore[attr-defined]
                    {
                        s.name: {
                            "num_partitions": s.partitions,
                            "replication_factor": s.replication_factor,
                            "configs": s.configs,
                        }
                        for s in missing
                    },
                    wait_for_metadata=True,
                )
            except TopicAlreadyExistsError:
                # Another worker starting at the same moment created some of them: check what it made.
                existing = _existing(admin, names)
                missing = [s for s in missing if s.name not in existing]
                if missing:
                    raise
        present = [s for s in specs if s.name in existing]
        configs = _configs(admin, [s.name for s in present])
    reports = [TopicReport(s.name, "created") for s in missing]
    reports += [compare(s, existing[s.name], configs[s.name]) for s in present]
    order = {n: i for i, n in enumerate(names)}
    return sorted(reports, key=lambda r: order[r.name])


def ensure_topics(settings: Settings, extra: list[TopicSpec] | None = None) -> list[TopicReport]:
    return ensure(required_topics(settings) + list(extra or []), settings.kafka)


def check_topics(settings: Settings, extra: list[TopicSpec] | None = None) -> list[TopicReport]:
    """The worker's start-up gate: ensure, then raise when a mismatch would break guarantees."""
    reports = ensure_topics(settings, extra)
    fatal = [r for r in reports if r.fatal]
    if fatal:
        raise TopicMismatchError(
            "refusing to start: " + "; ".join(str(r) for r in fatal)
            + ". Partition counts are fixed at creation (see README 'Changing the partition count'); "
            "the profiles topic must use cleanup.policy=compact."
        )
    return reports


def inspect(specs: list[TopicSpec], admin: object) -> list[TopicReport]:
    """Compare existing topics with their specs, creating nothing: a missing topic is reported `missing`."""
    existing = _existing(admin, [s.name for s in specs])
    present = [s for s in specs if s.name in existing]
    configs = _configs(admin, [s.name for s in present])
    return [
        compare(s, existing[s.name], configs[s.name]) if s.name in existing else TopicReport(s.name, "missing", (), True)
        for s in specs
    ]
