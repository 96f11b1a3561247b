"""Apply: a model update's result becomes the user's profile record on the profiles topic.

For each message of `{app_id}-results`:

- `FoldResult` success: compare-and-set on (epoch, version, batch) against the stored state; when it
  holds, the batch leaves `pending`, the version moves up by one, the profile is stored and published
  (keyed by user id, on the user's partition), then its update record (`schemas.updates`) on the updates
  topic. The profile record also keeps the last PREFSTREAM_HISTORY_VERSIONS updates (`UpdateEntry`), which
  the inspector shows and which the update record is made from. Otherwise the result is stale and changes
  nothing.
- `FoldResult` failure: count the attempt (backoff, degrade, park) and write a failure record.
- `Redrive`: unpark the named users of this partition (or every parked one).

Replays (offsets the state already includes): a success is then stale, but its profile may not have
reached the broker before a crash, so the current profile is published again (consumers keep the
highest (epoch, version), so a repeat changes nothing for them), and so is the update record of that
result, from the stored history (the same bytes: consumers dedupe on (user, epoch, version)); a redrive
is not run twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import structlog

from prefstream.models.interface import PreferenceModel, UpdateSuccess
from prefstream.logs import user_ref
from prefstream.schemas.failures import PARKED, FailureRecord, encode_failure
from prefstream.schemas.keys import split_key
from prefstream.schemas.profiles import Profile, encode_profile, record_version, tenant_field
from prefstream.schemas.timefmt import ms_to_rfc3339
from prefstream.schemas.updates import UpdateRecord, encode_update
from prefstream.streams import state as st
from prefstream.streams.metrics import StreamMetrics
from prefstream.streams.partitioning import partition_for
from prefstream.streams.records import FoldResult, Redrive, decode_command
from prefstream.streams.scheduler import FoldScheduler, now_ms
from prefstream.streams.store import Store
from prefstream.streams.tenancy import Tenancy

log = structlog.get_logger(__name__)

__all__ = ["Apply", "to_profile_record", "to_update_record", "update_entry"]


def to_profile_record(key: str, p: st.ProfileState) -> Profile:
    """The published form of a stored profile (`key`: the user key, `tenant/user_id` with a tenant)."""
    tenant, user_id = split_key(key)
    return Profile(
        schema_version=record_version(tenant), user_id=user_id, epoch=p.epoch, version=p.version,
        summary=p.summary, events_applied=p.events_applied, updated_at=ms_to_rfc3339(p.updated_ms),
        last_event_ts=ms_to_rfc3339(p.last_event_ts_ms), model=p.model, prompt_version=p.prompt_version,
        backend=p.backend, update_events=p.update_events, update_triples=p.update_triples,
        last_event_id=p.last_event_id, prompt_tokens=p.prompt_tokens, completion_tokens=p.completion_tokens,
        tenant=tenant_field(tenant),
    )  # fmt: skip


def update_entry(done: st.Applied, result: FoldResult) -> st.UpdateEntry:
    """The history entry of an applied update (everything its update record says, and the summary)."""
    p, applied = done.profile, done.applied
    ts = [e.ts_ms for e in applied]
    return st.UpdateEntry(
        request_id=result.request_id, epoch=p.epoch, version=p.version, summary=p.summary,
        event_ids=tuple(e.event_id for e in applied), events_applied=p.events_applied, triples=p.update_triples,
        first_event_ts_ms=min(ts, default=0), last_event_ts_ms=max(ts, default=0), prompt_tokens=p.prompt_tokens,
        completion_tokens=p.completion_tokens, model=p.model, prompt_version=p.prompt_version, backend=p.backend,
        attempt=result.attempt, degraded=result.degraded, queued_ms=min((e.accepted_ms for e in applied), default=0),
        requested_ms=result.requested_ms, finished_ms=result.finished_ms, applied_ms=p.updated_ms,
    )  # fmt: skip


def to_update_record(key: str, e: st.UpdateEntry, *, include_summary: bool) -> UpdateRecord:
    """The published form of a history entry (`key`: the user key); the summary only when asked for."""
    tenant, user_id = split_key(key)
    return UpdateRecord(
        schema_version=record_version(tenant), user_id=user_id, epoch=e.epoch, version=e.version,
        request_id=e.request_id, event_ids=list(e.event_ids), events_applied=e.events_applied, triples=e.triples,
        first_event_ts=ms_to_rfc3339(e.first_event_ts_ms), last_event_ts=ms_to_rfc3339(e.last_event_ts_ms),
        prompt_tokens=e.prompt_tokens, completion_tokens=e.completion_tokens, summary_chars=len(e.summary),
        model=e.model, prompt_version=e.prompt_version, backend=e.backend, attempt=e.attempt, degraded=e.degraded,
        queued_at=ms_to_rfc3339(e.queued_ms), requested_at=ms_to_rfc3339(e.requested_ms),
        finished_at=ms_to_rfc3339(e.finished_ms), applied_at=ms_to_rfc3339(e.applied_ms),
        summary=e.summary if include_summary else "", tenant=tenant_field(tenant),
    )  # fmt: skip


def find_entry(history: tuple[st.UpdateEntry, ...], result: FoldResult) -> st.UpdateEntry | None:
    """The stored entry this very result wrote (same request), if the history still holds it."""
    version = result.base_version + 1
    for e in history:
        if e.epoch == result.epoch and e.version == version and e.request_id == result.request_id:
            return e
    return None


@dataclass
class Apply:
    store: Store
    scheduler: FoldScheduler
    backend: PreferenceModel
    metrics: StreamMetrics
    plan: st.RetryPlan
    profiles: Any  # faust topics: the profiles, failures and updates topics
    failures: Any
    updates: Any
    partitions: int
    history_versions: int
    include_summary: bool
    template_tokens: int = 0
    tenancy: Tenancy | None = None

    async def on_command(self, raw: bytes | None, partition: int, offset: int, *, replay: bool) -> None:
        command = decode_command(raw)
        if isinstance(command, FoldResult):
            await self._apply(command, partition, replay=replay)
        elif isinstance(command, Redrive):
            if replay:  # done already: only its writes are made again (see `Store.rewrite_user`)
                for user_id in command.user_ids:
                    self.store.rewrite_user(user_id)
            else:
                self._redrive(command, partition)
        self.scheduler.result_seen(partition, offset)

    async def _apply(self, result: FoldResult, partition: int, *, replay: bool) -> None:
        user_id = result.user_id
        user = self.store.user(user_id)
        meta, pending = user.meta, user.pending
        outcome = result.outcome
        now = now_ms()
        if isinstance(outcome, UpdateSuccess):
            summary_tokens = max(0, self.backend.count_prompt_tokens(outcome.summary, ()) - self.template_tokens)
            done = st.apply_success(
                meta, pending, self.store.profile(user_id), epoch=result.epoch, base_version=result.base_version,
                event_ids=result.event_ids, summary=outcome.summary, summary_tokens=summary_tokens, now_ms=now,
                model=outcome.model, prompt_version=outcome.prompt_version, backend=result.backend,
                prompt_tokens=outcome.usage.prompt_tokens, completion_tokens=outcome.usage.completion_tokens,
            )  # fmt: skip
            if isinstance(done, st.Rejected):
                self._stale(result, done.reason)
                if replay:
                    await self._republish(user_id, partition, result)
            else:
                await self._publish(user_id, partition, done, result, now)
                meta, pending = done.meta, done.pending
        else:
            failed = st.apply_failure(
                meta, pending, epoch=result.epoch, base_version=result.base_version, event_ids=result.event_ids,
                reason=outcome.reason, over_budget=outcome.reason == "over_budget", now_ms=now, plan=self.plan,
            )  # fmt: skip
            if isinstance(failed, st.Rejected):
                self._stale(result, failed.reason)
            else:
                self.store.put_user(user_id, failed, pending, final=True)  # the only write: it records the offset too
                meta = failed
                await self._record_failure(user_id, partition, failed, pending, result, outcome.reason, now)
        self.scheduler.observe(user_id, st.view_of(partition, meta, pending))
        self.scheduler.complete(user_id, result.request_id)

    def _stale(self, result: FoldResult, reason: str) -> None:
        self.metrics.updates.labels("stale").inc()
        log.info("result_stale", user=user_ref(result.user_id), request_id=result.request_id, reason=reason,
                 epoch=result.epoch, base_version=result.base_version)  # fmt: skip

    async def _republish(self, user_id: str, partition: int, result: FoldResult) -> None:
        """A replayed success the state already holds: publish the current profile again if it includes it,
        and this result's update record again if the history still holds it."""
        self.store.rewrite_user(user_id)
        stored = self.store.profile_record(user_id)
        profile = stored.profile if stored is not None else None
        if profile is not None and profile.epoch == result.epoch and profile.version > result.base_version:
            record = encode_profile(to_profile_record(user_id, profile))
            await self.profiles.send(key=user_id.encode("utf-8"), value=record, partition=partition)
            self.metrics.profile_publishes.labels("republish").inc()
            entry = find_entry(stored.history, result) if stored is not None else None
            if entry is not None:
                await self._send_update(user_id, partition, entry)
                self.metrics.update_records.labels("republish").inc()

    async def _send_update(self, user_id: str, partition: int, entry: st.UpdateEntry) -> None:
        value = encode_update(to_update_record(user_id, entry, include_summary=self.include_summary))
        await self.updates.send(key=user_id.encode("utf-8"), value=value, partition=partition)

    async def _publish(self, user_id: str, partition: int, done: st.Applied, result: FoldResult, now: int) -> None:
        stored = self.store.profile_record(user_id)
        history = stored.history if stored is not None else ()
        entry = find_entry(history, result)
        if entry is not None and stored is not None and stored.profile.version == entry.version:
            # This result was applied before, up to the profile write, when the worker died: publish what was
            # stored then, so a repeated record has the same content.
            done = dataclasses.replace(done, profile=stored.profile)
        else:
            entry = update_entry(done, result)
        # Profile (with its history) first, then the user record: a crash between the two writes cannot leave
        # a version the profile does not have (the changelog keeps this order).
        self.store.put_profile(user_id, done.profile, st.push_history(history, entry, self.history_versions))
        self.store.put_user(user_id, done.meta, done.pending, final=True)  # last: it records the offset too
        p = done.profile
        await self.profiles.send(key=user_id.encode("utf-8"), value=encode_profile(to_profile_record(user_id, p)),
                                 partition=partition)  # fmt: skip
        await self._send_update(user_id, partition, entry)
        m = self.metrics
        m.updates.labels("applied").inc()
        if self.tenancy is not None:
            self.tenancy.applied(user_id)
        m.profile_publishes.labels("profile").inc()
        m.update_records.labels("record").inc()
        m.events_per_update.observe(len(done.applied))
        for e in done.applied:
            m.event_to_profile.observe(max(0.0, (now - e.produced_ms) / 1000))
        oldest = min(e.accepted_ms for e in done.applied)
        log.info(
            "update_applied",
            user=user_ref(user_id), request_id=result.request_id, epoch=p.epoch, version=p.version,
            events=len(done.applied), triples=p.update_triples, events_applied=p.events_applied,
            summary_chars=len(p.summary), prompt_tokens=p.prompt_tokens, completion_tokens=p.completion_tokens,
            attempt=result.attempt, degraded=result.degraded,
            wait_s=round((result.requested_ms - oldest) / 1000, 3),
            model_s=round((result.finished_ms - result.requested_ms) / 1000, 3),
            apply_s=round((now - result.finished_ms) / 1000, 3),
            still_pending=len(done.pending.events) if done.pending else 0,
        )  # fmt: skip

    async def _record_failure(self, user_id: str, partition: int, meta: st.Meta, pending: st.Pending | None,
                              result: FoldResult, reason: str, now: int) -> None:  # fmt: skip
        batch = st.batch_of(pending, result.event_ids)
        ts = [e.ts_ms for e in batch]

        tenant, plain_user_id = split_key(user_id)

        def record(code: str) -> bytes:
            return encode_failure(FailureRecord(
                schema_version=record_version(tenant), user_id=plain_user_id, epoch=result.epoch,
                base_version=result.base_version, reason=code, attempts=meta.attempts, event_count=len(batch),
                first_event_id=batch[0].event_id if batch else "", last_event_id=batch[-1].event_id if batch else "",
                first_event_ts=ms_to_rfc3339(min(ts)) if ts else "", last_event_ts=ms_to_rfc3339(max(ts)) if ts else "",
                failed_at=ms_to_rfc3339(now), model=result.model, prompt_version=result.prompt_version, backend=result.backend,
                tenant=tenant_field(tenant),
            ))  # fmt: skip

        key = user_id.encode("utf-8")
        await self.failures.send(key=key, value=record(reason), partition=partition)
        self.metrics.update_failures.labels(reason).inc()
        self.metrics.updates.labels("failed").inc()
        if meta.parked:
            # A second record marks the park itself, so operators see parked users on the same topic.
            await self.failures.send(key=key, value=record(PARKED), partition=partition)
            self.metrics.parks.inc()
        log.warning(
            "update_failed", user=user_ref(user_id), request_id=result.request_id, reason=reason,
            attempts=meta.attempts, degraded=result.degraded, parked=meta.parked, events=len(batch),
            retry_in_s=round(max(0, meta.next_retry_ms - now) / 1000, 3),
        )  # fmt: skip

    def _redrive(self, command: Redrive, partition: int) -> None:
        if command.user_ids:
            targets = [u for u in command.user_ids if partition_for(u, self.partitions) == partition]
        else:
            targets = [u for u, v in self.scheduler.views.items() if v.parked and v.partition == partition]
        count = 0
        for user_id in targets:
            user = self.store.user(user_id)
            if not user.meta.parked:
                continue
            meta = st.redrive(user.meta)
            self.store.put_user(user_id, meta, user.pending)
            self.scheduler.observe(user_id, st.view_of(partition, meta, user.pending))
            count += 1
        log.info("redrive", partition=partition, users=count)
