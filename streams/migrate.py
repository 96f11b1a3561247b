"""`prefstream state migrate`: move the state of a release before 0.2.0 into the one state table.

Releases before 0.2.0 kept three tables, each keyed by the raw UTF-8 user id, with msgpack values
(`streams.state`): `{app_id}-meta-changelog` (`Meta`), `{app_id}-pending-changelog` (`Pending`) and
`{app_id}-profile-changelog` (`ProfileState`). This release keeps one table (`streams.store`):
`u/<user>` = `UserRecord(meta, pending)`, `p/<user>` = `ProfileRecord(profile)`.

The command reads the three legacy changelogs to their end (every partition, the latest value per key,
tombstones honoured) and produces the new records to `{app_id}-state-changelog` on the same partition
number, which is the user's partition (murmur2(user_id) % P) in both layouts. It writes no source
progress (`o/`) records: the first worker of the new release then starts each source partition at the
group's committed offset, exactly where the old release stopped. A worker restores its table from that
changelog as it would after any move of a partition.

It refuses (exit 2, one line) while the consumer group `{app_id}` has members (a running worker of any
release could write meanwhile), when the partition counts disagree, and when the new changelog already
has records (a finished migration, or a worker of this release already ran): `--force` writes the
legacy values over them. The records it writes are a function of the legacy changelogs only, so a
second run (with `--force`) leaves the same latest value per key. Steps and caveats:
docs/reliability.md, "Upgrading state".
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from prefstream.settings import Settings
from prefstream.streams.errors import MigrationRefused
from prefstream.streams.state import Meta, Pending, ProfileState
from prefstream.streams.store import ProfileRecord, UserRecord, profile_key, user_key
from prefstream.streams.topology import LEGACY_TABLES, internal_topic_specs, internal_topics, legacy_changelogs

__all__ = ["LegacyState", "add_arguments", "changelog_counts", "migrate", "read_legacy", "run"]

#: How long reading one topic to its end may take.
READ_TIMEOUT_S = 120.0

_ENC = msgspec.msgpack.Encoder()
_DECODERS = {
    "meta": msgspec.msgpack.Decoder(Meta),
    "pending": msgspec.msgpack.Decoder(Pending),
    "profile": msgspec.msgpack.Decoder(ProfileState),
}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument(
        "--force", action="store_true",
        help="write even when the new state changelog already has records (legacy values win for the users they hold)",
    )  # fmt: skip
    parser.add_argument(
        "--delete-legacy", action="store_true",
        help="delete the legacy changelog topics: after migrating, or alone when the state changelog already has "
        "records (a finished migration)",
    )  # fmt: skip


@dataclass
class LegacyState:
    """The latest legacy values, per partition and raw user-id key (tombstoned keys are absent)."""

    tables: dict[str, dict[int, dict[bytes, bytes]]] = field(default_factory=dict)  # table -> partition -> key -> value
    records: int = 0  # records read, tombstones included
    partitions: dict[str, int] = field(default_factory=dict)  # topic -> partition count (existing topics only)

    def latest(self, table: str) -> dict[int, dict[bytes, bytes]]:
        return self.tables.get(table, {})


def _consumer(settings: Settings) -> Any:
    from kafka import KafkaConsumer

    from prefstream.kafka.security import client_errors, kafka_python_kwargs

    k = settings.kafka
    with client_errors(k):
        return KafkaConsumer(
            bootstrap_servers=k.bootstrap_servers, client_id=f"{k.client_id}-migrate", group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest", **kafka_python_kwargs(k),
        )  # fmt: skip


def _partitions(consumer: Any, topic: str) -> list[int]:
    """The topic's partitions; [] when it does not exist."""
    return sorted(consumer.partitions_for_topic(topic) or ())


def changelog_counts(settings: Settings) -> dict[str, int]:
    """Records (end - beginning offset, summed over partitions) in each legacy changelog and in the new
    state changelog; only topics that exist appear. Offsets only: cheap enough for every worker start."""
    from kafka import TopicPartition

    from prefstream.kafka.security import client_errors

    topics = [*legacy_changelogs(settings), internal_topics(settings)["state"]]
    consumer = _consumer(settings)
    try:
        with client_errors(settings.kafka):
            counts: dict[str, int] = {}
            for topic in topics:
                tps = [TopicPartition(topic, p) for p in _partitions(consumer, topic)]
                if not tps:
                    continue
                begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
                counts[topic] = sum(max(0, end[tp] - begin[tp]) for tp in tps)
            return counts
    finally:
        consumer.close()


def read_legacy(settings: Settings) -> LegacyState:
    """Read every legacy changelog from its beginning to its current end."""
    from kafka import TopicPartition

    state = LegacyState()
    consumer = _consumer(settings)
    try:
        for table, topic in zip(LEGACY_TABLES, legacy_changelogs(settings), strict=True):
            parts = _partitions(consumer, topic)
            if not parts:
                continue
            state.partitions[topic] = len(parts)
            latest: dict[int, dict[bytes, bytes]] = {p: {} for p in parts}
            state.tables[table] = latest
            tps = [TopicPartition(topic, p) for p in parts]
            end = consumer.end_offsets(tps)
            todo = {tp for tp in tps if end[tp] > 0}
            consumer.assign(list(todo))
            if todo:
                consumer.seek_to_beginning(*todo)
            deadline = time.monotonic() + READ_TIMEOUT_S
            while todo:
                if time.monotonic() > deadline:
                    raise MigrationRefused(f"could not read {topic} to its end within {READ_TIMEOUT_S:.0f} s")
                for tp, msgs in consumer.poll(timeout_ms=500).items():
                    for msg in msgs:
                        if msg.offset >= end[tp] or msg.key is None:
                            continue
                        state.records += 1
                        if msg.value is None:
                            latest[tp.partition].pop(msg.key, None)
                        else:
                            latest[tp.partition][msg.key] = msg.value
                todo = {tp for tp in todo if consumer.position(tp) < end[tp]}
    finally:
        consumer.close()
    return state


def _group_members(settings: Settings) -> int:
    from prefstream.topics import admin_client

    app_id = settings.worker.app_id
    with admin_client(settings.kafka) as admin:
        described = admin.describe_groups([app_id])  # type: ignore[attr-defined]
    return len((described.get(app_id) or {}).get("members") or ())


def new_records(legacy: LegacyState) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of the new layout, in a deterministic order: users, then profiles."""
    out: list[tuple[int, bytes, bytes]] = []
    metas, pendings, profiles = (legacy.latest(t) for t in LEGACY_TABLES)
    for partition in sorted(set(metas) | set(pendings)):
        meta_p, pending_p = metas.get(partition, {}), pendings.get(partition, {})
        for raw_user in sorted(set(meta_p) | set(pending_p)):
            user = raw_user.decode("utf-8")
            meta = _DECODERS["meta"].decode(meta_p[raw_user]) if raw_user in meta_p else Meta()
            pending = _DECODERS["pending"].decode(pending_p[raw_user]) if raw_user in pending_p else None
            out.append((partition, user_key(user), _ENC.encode(UserRecord(meta=meta, pending=pending))))
    for partition in sorted(profiles):
        for raw_user, raw in sorted(profiles[partition].items()):
            profile = _DECODERS["profile"].decode(raw)
            out.append((partition, profile_key(raw_user.decode("utf-8")), _ENC.encode(ProfileRecord(profile=profile))))
    return out


@dataclass(frozen=True)
class MigrationReport:
    users: int
    profiles: int
    partitions: tuple[int, ...]
    legacy_records: int
    records_written: int

    def __str__(self) -> str:
        parts = ",".join(map(str, self.partitions)) or "none"
        return (f"migrated {self.users} user record(s) and {self.profiles} profile(s) on partition(s) {parts} "
                f"({self.legacy_records} legacy record(s) read, {self.records_written} written)")  # fmt: skip


def migrate(settings: Settings, *, force: bool = False) -> MigrationReport | None:
    """Run the migration (the checks in the module docstring first). None: nothing to migrate."""
    members = _group_members(settings)
    app_id = settings.worker.app_id
    if members:
        raise MigrationRefused(
            f"refusing to migrate: consumer group {app_id!r} has {members} active member(s); stop every worker "
            "(of any release) first"
        )
    counts = changelog_counts(settings)
    state_topic = internal_topics(settings)["state"]
    if not any(counts.get(t) for t in legacy_changelogs(settings)):
        return None
    legacy = read_legacy(settings)
    wrong = {t: n for t, n in legacy.partitions.items() if n != settings.topics.partitions}
    if wrong:
        raise MigrationRefused(
            f"refusing to migrate: legacy changelog partitions {wrong} differ from PREFSTREAM_PARTITIONS="
            f"{settings.topics.partitions}; a user's state lives on partition murmur2(user_id) % partitions"
        )
    if counts.get(state_topic) and not force:
        raise MigrationRefused(
            f"refusing to migrate: {state_topic} already has {counts[state_topic]} record(s) (migrated before, or "
            "a worker of this release ran); --force writes the legacy values over them"
        )
    _ensure_state_topic(settings)
    records = new_records(legacy)
    _produce(settings, state_topic, records)
    users = sum(1 for _, k, _ in records if k.startswith(b"u/"))
    return MigrationReport(
        users=users, profiles=len(records) - users, partitions=tuple(sorted({p for p, _, _ in records})),
        legacy_records=legacy.records, records_written=len(records),
    )  # fmt: skip


def _ensure_state_topic(settings: Settings) -> None:
    from prefstream.topics import ensure

    state_topic = internal_topics(settings)["state"]
    spec = next(s for s in internal_topic_specs(settings) if s.name == state_topic)
    (report,) = ensure([spec], settings.kafka)
    if report.fatal:
        raise MigrationRefused(f"refusing to migrate: {report}")


def _produce(settings: Settings, topic: str, records: list[tuple[int, bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    from prefstream.kafka.security import client_errors, kafka_python_kwargs

    k = settings.kafka
    with client_errors(k):
        producer = KafkaProducer(
            bootstrap_servers=k.bootstrap_servers, client_id=f"{k.client_id}-migrate", acks="all", linger_ms=20,
            max_in_flight_requests_per_connection=1,  # keep each partition's order on retries
            **kafka_python_kwargs(k),
        )  # fmt: skip
    try:
        futures = [producer.send(topic, key=key, value=value, partition=p) for p, key, value in records]
        producer.flush()
        for fut in futures:
            fut.get(timeout=60)  # raises when the broker did not take a record
    finally:
        producer.close()


def delete_legacy(settings: Settings) -> list[str]:
    from prefstream.topics import admin_client

    counts = changelog_counts(settings)
    topics = [t for t in legacy_changelogs(settings) if t in counts]
    if topics:
        with admin_client(settings.kafka) as admin:
            admin.delete_topics(topics)  # type: ignore[attr-defined]
    return topics


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    state_topic = internal_topics(settings)["state"]
    if args.delete_legacy and not args.force and changelog_counts(settings).get(state_topic):
        report = None  # migrated before: only the deletion is asked for
    else:
        report = migrate(settings, force=args.force)
        if report is None:
            print(f"nothing to migrate: no legacy changelog of app {settings.worker.app_id!r} has records")
        else:
            print(report)
            if report.records_written == 0:
                print("the legacy changelogs hold only deleted keys: delete them (--delete-legacy), or workers of "
                      "this release keep refusing to start")  # fmt: skip
    if args.delete_legacy:
        deleted = delete_legacy(settings)
        print(f"deleted legacy changelog(s): {', '.join(deleted) or 'none'}")
    return 0
