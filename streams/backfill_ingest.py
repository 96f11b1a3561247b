"""Backfill in the worker: a chunk of one user's history becomes pending evidence, in one state write.

`{app_id}-backfill` is co-partitioned with the events topic (the tool writes each chunk on the partition
of its user key) and consumed by the same agent, so a chunk goes through the same state, progress record
and dedupe as live events. For each event of a `BackfillChunk`:

1. decode it (the tool validated it already; anything that does not decode now, names another user or
   is a `forget`, is skipped and counted `invalid`: a forget goes through the live path);
2. dedupe on (user key, event_id) against the user's remembered ids, the same memory live events use, so
   an event both in the history and live is applied once, whichever comes first;
3. drop it if it happened before the user's last forget (`state.before_forget`);
4. append it to `pending`, marked `backfill`.

Then one write of the user record, with `backfill_hold_ms` set while more chunks of the user are coming
(the flush policy then waits for a full token budget instead of folding a partial batch) and cleared by
the final chunk. Backfill events are bounded by the tool's rate limit, not by the per-user or per-tenant
pending limits (a history may be longer than `PREFSTREAM_MAX_PENDING_EVENTS`). A replayed chunk finds its
events remembered and writes the user record again, like a replayed live event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from prometheus_client import Counter

from prefstream.logs import user_ref
from prefstream.schemas.decode import decode_event
from prefstream.schemas.errors import EventRejected
from prefstream.schemas.events import ForgetEvent
from prefstream.schemas.evidence import to_evidence
from prefstream.schemas.keys import user_key
from prefstream.schemas.timefmt import ts_to_ms
from prefstream.streams import state as st
from prefstream.streams.errors import InternalRecordError
from prefstream.streams.ingest import Ingest
from prefstream.streams.partitioning import partition_for
from prefstream.streams.progress import SourceRecord
from prefstream.streams.records import decode_backfill
from prefstream.streams.scheduler import now_ms

log = structlog.get_logger(__name__)

__all__ = ["BackfillIngest"]


@dataclass
class BackfillIngest:
    ingest: Ingest  # its settings, store, scheduler, backend and metrics
    hold_ms: int
    events: Any = None  # Counter prefstream_backfill_events_total{outcome}

    def __post_init__(self) -> None:
        self.events = Counter(
            "prefstream_backfill_events",
            "Events of backfill chunks, by outcome (accepted, duplicate, before_forget, invalid).",
            ["outcome"], registry=self.ingest.metrics.registry,
        )  # fmt: skip

    async def on_chunk(self, record: SourceRecord, *, replay: bool) -> None:
        ing = self.ingest
        chunk = decode_backfill(record.value)
        key = chunk.key
        owner = partition_for(key, ing.partitions)
        if record.partition != owner:
            raise InternalRecordError(f"backfill chunk on partition {record.partition}, owner is {owner}")
        flush = ing.settings.flush
        now = now_ms()
        user = ing.store.user(key)
        meta, pending = user.meta, user.pending
        seen = st.seen_set(meta)
        new_keys: list[bytes] = []
        items: list[st.PendingEvent] = []
        counts = {"accepted": 0, "duplicate": 0, "before_forget": 0, "invalid": 0}
        produced_ms = record.timestamp_ms or now
        for value in chunk.events:
            try:
                event = decode_event(None, value, ing.settings.limits)
            except EventRejected:
                counts["invalid"] += 1
                continue
            if isinstance(event, ForgetEvent) or user_key(event.tenant, event.user_id) != key:
                counts["invalid"] += 1
                continue
            skey = st.seen_key(key, event.event_id)
            if skey in seen:
                counts["duplicate"] += 1
                continue
            ts_ms = ts_to_ms(event.ts)
            if st.before_forget(meta, ts_ms):
                counts["before_forget"] += 1
                continue
            seen.add(skey)
            new_keys.append(skey)
            evidence = to_evidence(event)
            tokens = max(0, ing.backend.count_prompt_tokens(None, (evidence,)) - ing.template_tokens)
            items.append(st.PendingEvent(event_id=event.event_id, evidence=evidence, ts_ms=ts_ms,
                                         produced_ms=produced_ms, accepted_ms=now, tokens=tokens, backfill=True))  # fmt: skip
            counts["accepted"] += 1
        if new_keys:
            meta = st.remember_many(meta, new_keys, now, flush.dedupe_horizon_s, flush.dedupe_max_ids)
        meta = msgspec.structs.replace(meta, backfill_hold_ms=0 if chunk.final else now + self.hold_ms)
        pending = st.accept_many(pending, meta, items)
        ing.store.put_user(key, meta, pending)  # one write per chunk, also on a replay (see the docstring)
        for outcome, n in counts.items():
            if n:
                self.events.labels(outcome).inc(n)
        if items:
            ing.metrics.events_accepted.inc(len(items))
        ing.scheduler.observe(key, st.view_of(owner, meta, pending))
        log.info("backfill_chunk", user=user_ref(key), final=chunk.final, replay=replay, **counts)
