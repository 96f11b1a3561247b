"""Ingest: an event becomes a validated record in its user's pending buffer (or a dead letter).

For each message of the events topic or of `{app_id}-repartition`:

1. decode and validate (`schemas.decode.decode_event`); a rejection becomes a dead letter;
2. an event on a partition other than its user's is forwarded there (`{app_id}-repartition`);
3. dedupe on (user_id, event_id) against the user's remembered ids;
4. a `forget` erases the user's evidence and profile; any other event is appended to `pending`, in
   the same single write as the dedupe memory (`streams.store.UserRecord`), and the scheduler is told.

Replays (offsets the state already includes, `streams.progress`) run the same steps: an accepted
event is then a duplicate, a forward is sent again (the owner dedupes it), and a dead letter the
broker already confirmed is not written twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog

from prefstream.models.interface import PreferenceModel
from prefstream.logs import user_ref
from prefstream.settings import Settings
from prefstream.schemas.deadletter import VALUE_OMITTED_HEADER, dead_letter_headers
from prefstream.schemas.decode import decode_event
from prefstream.schemas.errors import EventRejected, StreamCode
from prefstream.schemas.events import ForgetEvent
from prefstream.schemas.evidence import to_evidence
from prefstream.schemas.keys import user_key
from prefstream.schemas.timefmt import ts_to_ms
from prefstream.streams import state as st
from prefstream.streams.errors import InternalRecordError, too_large
from prefstream.streams.metrics import StreamMetrics
from prefstream.streams.partitioning import partition_for
from prefstream.streams.progress import SourceRecord, SourceTracker
from prefstream.streams.records import Forwarded, decode_forwarded, encode
from prefstream.streams.scheduler import FoldScheduler, now_ms
from prefstream.streams.store import Store
from prefstream.streams.tenancy import Tenancy

log = structlog.get_logger(__name__)

__all__ = ["BACKLOG_FULL", "Ingest"]

#: Our own dead-letter code (not a wire-format problem): the user's pending buffer is full.
BACKLOG_FULL = StreamCode.BACKLOG_FULL.value


@dataclass
class Ingest:
    settings: Settings
    store: Store
    tracker: SourceTracker
    scheduler: FoldScheduler
    backend: PreferenceModel
    metrics: StreamMetrics
    repartition: Any  # faust topics: {app_id}-repartition, the dead-letter topic, the profiles topic
    dlq: Any
    profiles: Any
    events_topic: str
    partitions: int
    template_tokens: int = 0  # the prompt frame's own tokens (set once the backend has started)
    tenancy: Tenancy | None = None  # per-tenant limits and metrics (streams.tenancy)

    async def on_event(self, record: SourceRecord, *, replay: bool) -> None:
        if not replay:
            self.metrics.events_received.inc()
        await self._incoming(record, record.key, record.value, None, replay=replay)

    async def on_forwarded(self, record: SourceRecord, *, replay: bool) -> None:
        fwd = decode_forwarded(record.value)
        await self._incoming(record, record.key, fwd.value, fwd, replay=replay)

    async def _incoming(self, record: SourceRecord, key: bytes | None, value: bytes | None, forwarded: Forwarded | None,
                        *, replay: bool) -> None:  # fmt: skip
        limits = self.settings.limits
        try:
            # The key is checked here, not in decode: a wrong key is repartitioned, not rejected.
            event = decode_event(None, value, limits)
        except EventRejected as rej:
            await self._dead_letter(record, key, value, rej.code.value, rej.message, rej.path, forwarded)
            return
        user_id = user_key(event.tenant, event.user_id)  # the user id itself without a tenant (schemas.keys)
        user_bytes = user_id.encode("utf-8")
        owner = partition_for(user_id, self.partitions)
        produced_ms = forwarded.produced_ms if forwarded else (record.timestamp_ms or int(time.time() * 1000))
        if record.partition != owner:
            if forwarded is not None:
                raise InternalRecordError(f"forwarded event on partition {record.partition}, owner is {owner}")
            cause = "partitioner" if key == user_bytes else "key"
            fwd = Forwarded(value=value or b"", source_partition=record.partition, source_offset=record.offset,
                            produced_ms=produced_ms, cause=cause)  # fmt: skip
            await self.repartition.send(key=user_bytes, value=encode(fwd), partition=owner)
            self.metrics.events_repartitioned.labels(cause).inc()
            return
        now = now_ms()
        user = self.store.user(user_id)
        meta, pending = user.meta, user.pending
        seen = st.seen_key(user_id, event.event_id)
        if st.has_seen(meta, seen):
            self.metrics.events_duplicate.inc()
            if replay:
                await self._redo_writes(user_id, owner, forgotten=isinstance(event, ForgetEvent))
            return
        flush = self.settings.flush
        ts_ms = ts_to_ms(event.ts)
        if isinstance(event, ForgetEvent):
            remembered = st.remember(meta, seen, now, flush.dedupe_horizon_s, flush.dedupe_max_ids)
            await self._forget(user_id, remembered, owner, ts_ms)
            return
        if st.before_forget(meta, ts_ms):
            # It happened before the user's last forget: erased by it, so never folded into a later epoch.
            self.metrics.events_dropped.labels("before_forget").inc()
            log.info("event_dropped", reason="before_forget", user=user_ref(user_id), epoch=meta.epoch)
            return
        if pending is not None and pending.epoch == meta.epoch and len(pending.events) >= flush.max_pending_events:
            await self._dead_letter(record, key, value, BACKLOG_FULL, f"user has {len(pending.events)} pending events",
                                    "$", forwarded)  # fmt: skip
            self._tenant_rejected(user_id, BACKLOG_FULL)
            return
        limited = self.tenancy.limits.admit_event(user_id) if self.tenancy is not None else None
        if limited is not None:
            await self._dead_letter(record, key, value, limited.value, "the tenant's limit on this worker is reached",
                                    "$.tenant", forwarded)  # fmt: skip
            self._tenant_rejected(user_id, limited.value)
            return
        meta = st.remember(meta, seen, now, flush.dedupe_horizon_s, flush.dedupe_max_ids)
        evidence = to_evidence(event)
        tokens = max(0, self.backend.count_prompt_tokens(None, (evidence,)) - self.template_tokens)
        item = st.PendingEvent(event_id=event.event_id, evidence=evidence, ts_ms=ts_ms,
                               produced_ms=produced_ms, accepted_ms=now, tokens=tokens)  # fmt: skip
        pending = st.accept(pending, meta, item)
        self.store.put_user(user_id, meta, pending, final=True)  # the only write: it records the offset too
        self.metrics.events_accepted.inc()
        if self.tenancy is not None:
            self.tenancy.accepted(user_id)
        self.scheduler.observe(user_id, st.view_of(owner, meta, pending))

    def _tenant_rejected(self, user_id: str, code: str) -> None:
        if self.tenancy is not None:
            self.tenancy.rejected(user_id, code)

    async def _redo_writes(self, user_id: str, partition: int, *, forgotten: bool) -> None:
        """A replayed event the state already holds: its writes and sends may not have reached the broker
        before a crash (`Store.rewrite_user`), so they are made again; each is idempotent."""
        self.store.rewrite_user(user_id)
        if forgotten and self.store.profile(user_id) is None:
            self.store.delete_profile(user_id, always=True)
            await self.profiles.send(key=user_id.encode("utf-8"), value=None, partition=partition)

    async def _dead_letter(self, record: SourceRecord, key: bytes | None, value: bytes | None, code: str,
                           message: str, path: str, fwd: Forwarded | None) -> None:  # fmt: skip
        """Send the rejected message, verbatim, to the dead-letter topic, at most once per source offset as
        far as the state can tell: a replay of an offset whose dead letter the broker confirmed is skipped."""
        partition = fwd.source_partition if fwd else record.partition
        offset = fwd.source_offset if fwd else record.offset
        if self.tracker.was_dead_lettered(record):
            self.metrics.dead_letters_suppressed.inc()
            return
        headers = dead_letter_headers(code, message, self.events_topic, partition, offset, time.time(), path=path)
        # Confirmed before the progress record says so: the next owner trusts that record.
        try:
            await (await self.dlq.send(key=key, value=value, headers=headers))
        except Exception as exc:
            if not too_large(exc):
                raise
            # Larger than the dead-letter topic takes (an operator raised the events topic's limit past it):
            # the reason still goes out, with the size in place of the bytes, which stay on the source topic
            # at the position `prefstream.error.id` names. Stopping here would stop the worker on this input.
            omitted = [(VALUE_OMITTED_HEADER, str(len(value or b"")).encode())]
            await (await self.dlq.send(key=key, value=None, headers=headers + omitted))
            self.metrics.dead_letter_values_omitted.inc()
        self.tracker.dead_lettered(record)
        self.metrics.events_rejected.labels(code).inc()
        log.info("event_rejected", code=code, path=path, partition=partition, offset=offset)

    async def _forget(self, user_id: str, meta: st.Meta, partition: int, ts_ms: int) -> None:
        """Erase the user's evidence and profile; keep only content-free dedupe metadata; tombstone."""
        new_meta = st.forget(meta, ts_ms)
        self.store.put_user(user_id, new_meta, None)
        self.store.delete_profile(user_id)
        self.scheduler.forget(user_id)
        await self.profiles.send(key=user_id.encode("utf-8"), value=None, partition=partition)
        self.metrics.forgets.inc()
        self.metrics.profile_publishes.labels("tombstone").inc()
        log.info("user_forgotten", user=user_ref(user_id), epoch=new_meta.epoch)
