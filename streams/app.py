"""The faust app: one stateful agent, the fold scheduler, the read API and metrics.

Topology (all topics have PREFSTREAM_PARTITIONS partitions, key = UTF-8 user id; records prefstream
writes name their partition, murmur2(user_id) % P):

    events ─────────┐
    {id}-repartition ├─> agent `state` ──> tables meta / pending / profile (RocksDB, changelogged)
    {id}-results ────┘        │  ├─> dead letters, repartitioned events, profiles, failure records
                              │  └─> reports to the scheduler (views, applied results)
    fold scheduler (in-process service) ──> model.update() x window ──> {id}-results

One agent with concurrency 1 consumes the three co-partitioned topics, so every table write happens
inside the stream iteration of one source event, on that event's partition (a faust constraint: see
docs/streams.md), and no two writes to one user interleave. The agent never awaits the model: its
work per message is decode, a few table reads and writes and a send, so offsets commit and rebalances
complete in milliseconds whatever the model is doing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import structlog
from faust.types import TP, EventT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from models.interface import PreferenceModel, UpdateSuccess
from prefstream import logs
from prefstream.logs import user_ref
from prefstream.settings import Settings
from prefstream.topics import TopicSpec, compacted_configs
from schemas.deadletter import dead_letter_headers
from schemas.decode import decode_event
from schemas.errors import EventRejected
from schemas.events import ForgetEvent
from schemas.evidence import to_evidence
from schemas.failures import FAILURE_SCHEMA_VERSION, FailureRecord, encode_failure
from schemas.profiles import PROFILE_SCHEMA_VERSION, Profile, encode_profile
from schemas.timefmt import ms_to_rfc3339, ts_to_ms
from streams import state as st
from streams.errors import InternalRecordError
from streams.metrics import StreamMetrics
from streams.partitioning import partition_for
from streams.policy import FlushPolicy, UserView
from streams.records import FoldResult, Forwarded, Redrive, decode_command, decode_forwarded, encode
from streams.scheduler import FoldScheduler, now_ms

log = structlog.get_logger(__name__)

__all__ = ["StreamApp", "internal_topic_specs", "internal_topics"]

TABLES = ("meta", "pending", "profile")
ROUTED_HEADER = "X-Prefstream-Routed"
#: Our own dead-letter code (not a wire-format problem): the user's pending buffer is full.
BACKLOG_FULL = "backlog_full"
#: Small RocksDB caches: three tables x partitions per worker on a small machine (faust's default is 2 GiB each).
ROCKSDB_OPTIONS = {
    "block_cache_size": 32 * 1024**2,
    "block_cache_compressed_size": 8 * 1024**2,
    "write_buffer_size": 8 * 1024**2,
    "max_write_buffer_number": 2,
}


def internal_topics(settings: Settings) -> dict[str, str]:
    """Names of prefstream's internal topics (faust's app id is their prefix)."""
    app_id = settings.worker.app_id
    names = {"repartition": f"{app_id}-repartition", "results": f"{app_id}-results"}
    names.update({table: f"{app_id}-{table}-changelog" for table in TABLES})
    return names


def internal_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The internal topics, for `prefstream.topics.check_topics`: created before faust starts, with
    short retention (they carry user text in transit), and checked for the fixed partition count."""
    p, rf = settings.topics.partitions, settings.kafka.replication_factor
    names = internal_topics(settings)
    transit = {"cleanup.policy": "delete", "retention.ms": str(settings.topics.internal_retention_ms)}
    changelog = compacted_configs(settings.topics)
    return [
        TopicSpec(names["repartition"], p, rf, transit),
        TopicSpec(names["results"], p, rf, transit),
        *(TopicSpec(names[t], p, rf, changelog, strict=("cleanup.policy",)) for t in TABLES),
    ]


def faust_options(settings: Settings) -> dict[str, Any]:
    """Every faust setting we rely on, passed explicitly (faust reads no environment variable: `env={}`)."""
    w, p = settings.worker, settings.topics.partitions
    return {
        "env": {},  # faust must not pick up WEB_PORT, BROKER_URL, APP_ENV_PREFIX, ... from the environment
        "id_format": "{id}",  # the app id is the consumer group and the internal topic prefix, verbatim
        "autodiscover": False,
        "broker": settings.kafka.faust_broker,
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


class StreamApp:
    """The worker's faust app and everything wired to it. Build, then run with a faust Worker."""

    def __init__(self, settings: Settings, backend: PreferenceModel, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.settings = settings
        self.backend = backend
        self.backend_ready = False
        self.partitions = settings.topics.partitions
        self.metrics = StreamMetrics()
        names = internal_topics(settings)
        self.names = names
        app = self.app = faust.App(settings.worker.app_id, loop=loop, **faust_options(settings))
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        t = settings.topics
        self.events_topic = t.events
        self.source = app.topic(t.events, names["repartition"], names["results"], **raw)
        self.repartition = app.topic(names["repartition"], partitions=self.partitions, **raw)
        self.results = app.topic(names["results"], partitions=self.partitions, **raw)
        self.profiles = app.topic(t.profiles, partitions=self.partitions, **raw)
        self.dlq = app.topic(t.dlq, **raw)
        self.failures = app.topic(t.failures, partitions=self.partitions, **raw)
        table_kw: dict[str, Any] = {
            "partitions": self.partitions,
            "key_type": bytes,
            "value_type": bytes,  # bytes => faust's raw codec: keys are the plain UTF-8 user id
            "extra_topic_configs": compacted_configs(t),
            "options": ROCKSDB_OPTIONS,
        }
        self.meta = app.Table("meta", **table_kw)
        self.pending = app.Table("pending", **table_kw)
        self.profile = app.Table("profile", **table_kw)
        flush = settings.flush
        self.plan = st.RetryPlan(flush.retry_limit, flush.degraded_attempts, flush.retry_backoff_s, flush.retry_backoff_max_s)
        self._template_tokens = 0
        self.scheduler = FoldScheduler(
            backend=backend,
            policy=FlushPolicy.from_settings(flush, backend.prompt_token_budget),
            flush=flush,
            plan=self.plan,
            read_state=self.read_state,
            send_result=self._send_result,
            metrics=self.metrics,
            user_key=user_ref,
            on_fatal=self._fatal,
        )
        self._processed: dict[tuple[str, int], int] = {}
        self.metrics.callbacks.pending = self.scheduler.pending_figures
        self.metrics.callbacks.lag = self.consumer_lag
        self._wire()

    # --- wiring -----------------------------------------------------------------------------------

    def _wire(self) -> None:
        app = self.app

        @app.agent(self.source, name="state")
        async def state_agent(stream: faust.StreamT[bytes]) -> None:
            async for event in stream.events():
                try:
                    await self.handle(event)
                except Exception as exc:
                    # A bug, not bad input (bad input is dead-lettered): stop rather than skip the offset.
                    msg = event.message
                    log.exception("agent_failed", topic=msg.topic, partition=msg.partition, offset=msg.offset)
                    self._fatal(exc)
                    raise

        @app.task
        async def fold_scheduler() -> None:
            await self.start_backend()
            await self.scheduler.run()

        @app.on_partitions_revoked.connect
        async def on_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
            self.scheduler.on_revoked()

        @app.on_partitions_assigned.connect
        async def on_assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
            self.scheduler.on_assigned(self._owned(assigned))

        @app.on_rebalance_complete.connect
        async def on_rebalance_complete(sender: Any, **_: Any) -> None:
            await self._recovered()

        @app.on_before_shutdown.connect
        async def on_shutdown(sender: Any, **_: Any) -> None:
            await self.scheduler.stop()
            await self.backend.aclose()

        self._wire_web()

    def _wire_web(self) -> None:
        app = self.app

        @app.page("/profiles/{user_id}")
        async def get_profile(web: Any, request: Any, user_id: str) -> Any:
            return await self.profile_view(web, request, user_id)

        @app.page("/livez")
        async def livez(web: Any, request: Any) -> Any:
            # Alive unless the backend died (the scheduler also stops the worker then; this covers the gap).
            fault = self.backend_fault() if self.backend_ready else None
            if fault is not None:
                return web.json({"status": "dead", "reason": fault}, status=503)
            return web.json({"status": "ok"})

        @app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            ready, why = self.readiness()
            return web.json({"ready": ready, "reason": why}, status=200 if ready else 503)

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(self.metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def start_backend(self) -> None:
        if not self.backend_ready:
            await self.backend.start()
            self._template_tokens = self.backend.count_prompt_tokens(None, ())
            self.backend_ready = True

    def _fatal(self, exc: BaseException) -> None:
        self.app._crash(exc)  # mode: stop the worker with this reason; the orchestrator restarts it

    def _owned(self, assigned: set[TP]) -> set[int]:
        return {tp.partition for tp in assigned if tp.topic == self.events_topic}

    async def _recovered(self) -> None:
        """After recovery: rebuild the scheduler's views from the tables and gate on unapplied results."""
        owned = self.scheduler.owned
        views: dict[str, UserView] = {}
        for key, raw in list(self.pending.items()):
            user_id = key.decode("utf-8")
            partition = partition_for(user_id, self.partitions)
            if partition not in owned:
                continue
            meta = st.decode_meta(self.meta.get(key))
            view = st.view_of(partition, meta, st.decode_pending(raw))
            if view is not None:
                views[user_id] = view
        tps = [TP(self.names["results"], p) for p in sorted(owned)]
        highwaters: dict[int, int] = {}
        if tps:
            consumer = self.app.consumer
            hws = await consumer.highwaters(*tps)
            for tp in tps:
                # Right after recovery the paused partition sits at its committed offset: nothing before
                # it is waiting to be applied.
                position = await consumer.position(tp)
                if position:
                    self.scheduler.result_seen(tp.partition, position - 1)
                highwaters[tp.partition] = int(hws.get(tp, 0) or 0)
        self.scheduler.on_recovered(views, highwaters)
        log.info("assignment_ready", partitions=sorted(owned), users_pending=len(views))

    # --- state access ---------------------------------------------------------------------------

    def read_state(self, user_id: str) -> tuple[st.Meta, st.Pending | None, st.ProfileState | None]:
        key = user_id.encode("utf-8")
        return (
            st.decode_meta(self.meta.get(key)),
            st.decode_pending(self.pending.get(key)),
            st.decode_profile_state(self.profile.get(key)),
        )

    async def profile_view(self, web: Any, request: Any, user_id: str) -> Any:
        """`GET /profiles/{user_id}`: the current profile from the owner of the user's partition."""
        partition = partition_for(user_id, self.partitions)
        if partition in self.scheduler.owned and not self.scheduler.paused:
            profile = st.decode_profile_state(self.profile.get(user_id.encode("utf-8")))
            if profile is None:
                return web.json({"error": "no profile", "user_id": user_id}, status=404)
            return web.bytes(encode_profile(self._profile_record(user_id, profile)), content_type="application/json")
        if request.headers.get(ROUTED_HEADER):
            # Routed here by a peer that believes we own it: the assignment is moving. Do not bounce.
            return web.json({"error": "partition not served here (rebalancing)"}, status=503)
        owner = self._owner_url(partition)
        if owner is None:
            return web.json({"error": "owner unknown (rebalancing)"}, status=503)
        url = f"{owner.rstrip('/')}/profiles/{user_id}"
        async with self.app.http_client.get(url, headers={ROUTED_HEADER: "1"}) as response:
            body = await response.read()
            return web.bytes(body, content_type=response.content_type, status=response.status)

    def _owner_url(self, partition: int) -> str | None:
        changelog = self.names["profile"]
        for url, topics in self.app.assignor.tables_metadata().items():
            if partition in topics.get(changelog, ()):
                return str(url)
        return None

    def _profile_record(self, user_id: str, p: st.ProfileState) -> Profile:
        return Profile(
            schema_version=PROFILE_SCHEMA_VERSION, user_id=user_id, epoch=p.epoch, version=p.version,
            summary=p.summary, events_applied=p.events_applied, updated_at=ms_to_rfc3339(p.updated_ms),
            last_event_ts=ms_to_rfc3339(p.last_event_ts_ms), model=p.model, prompt_version=p.prompt_version,
            backend=p.backend, update_events=p.update_events, update_triples=p.update_triples,
            last_event_id=p.last_event_id, prompt_tokens=p.prompt_tokens, completion_tokens=p.completion_tokens,
        )  # fmt: skip

    def backend_fault(self) -> str | None:
        """Why the started backend is unhealthy (its error's type), or None when it is healthy."""
        try:
            self.backend.check_health()
        except Exception as exc:
            return type(exc).__name__
        return None

    def readiness(self) -> tuple[bool, str]:
        if not self.backend_ready:
            return False, "model backend starting"
        fault = self.backend_fault()
        if fault is not None:
            return False, f"model backend unhealthy: {fault}"
        return True, "ok"

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        lag: dict[tuple[str, int], int] = {}
        consumer = self.app._consumer
        if consumer is None:
            return lag
        for (topic, partition), offset in list(self._processed.items()):
            if partition not in self.scheduler.owned:
                continue
            try:
                hw = consumer.highwater(TP(topic, partition))
            except Exception:
                continue
            if hw is not None:
                lag[(topic, partition)] = max(0, int(hw) - offset - 1)
        return lag

    # --- the agent's work -----------------------------------------------------------------------

    async def handle(self, event: EventT) -> None:
        msg = event.message
        self._processed[(msg.topic, msg.partition)] = msg.offset
        if msg.topic == self.events_topic:
            self.metrics.events_received.inc()
            await self._incoming(msg.key, msg.value, msg, forwarded=None)
        elif msg.topic == self.names["repartition"]:
            fwd = decode_forwarded(msg.value)
            await self._incoming(msg.key, fwd.value, msg, forwarded=fwd)
        else:
            command = decode_command(msg.value)
            if isinstance(command, FoldResult):
                await self._apply(command, msg.partition)
            elif isinstance(command, Redrive):
                self._redrive(command, msg.partition)
            self.scheduler.result_seen(msg.partition, msg.offset)

    async def _dead_letter(self, key: bytes | None, value: bytes | None, code: str, message: str, path: str, msg: Any, fwd: Forwarded | None) -> None:
        partition = fwd.source_partition if fwd else msg.partition
        offset = fwd.source_offset if fwd else msg.offset
        headers = dead_letter_headers(code, message, self.events_topic, partition, offset, time.time(), path=path)
        # Verbatim key and value, so the record can be replayed to the events topic once fixed.
        await self.dlq.send(key=key, value=value, headers=headers)
        self.metrics.events_rejected.labels(code).inc()
        log.info("event_rejected", code=code, path=path, partition=partition, offset=offset)

    async def _incoming(self, key: bytes | None, value: bytes | None, msg: Any, forwarded: Forwarded | None) -> None:
        limits = self.settings.limits
        try:
            # The key is checked here, not in decode: a wrong key is repartitioned, not rejected.
            event = decode_event(None, value, limits)
        except EventRejected as rej:
            await self._dead_letter(key, value, rej.code.value, rej.message, rej.path, msg, forwarded)
            return
        user_id = event.user_id
        user_key = user_id.encode("utf-8")
        owner = partition_for(user_id, self.partitions)
        produced_ms = forwarded.produced_ms if forwarded else int((msg.timestamp or time.time()) * 1000)
        if msg.partition != owner:
            if forwarded is not None:
                raise InternalRecordError(f"forwarded event on partition {msg.partition}, owner is {owner}")
            cause = "partitioner" if key == user_key else "key"
            record = Forwarded(value=value or b"", source_partition=msg.partition, source_offset=msg.offset,
                               produced_ms=produced_ms, cause=cause)  # fmt: skip
            await self.repartition.send(key=user_key, value=encode(record), partition=owner)
            self.metrics.events_repartitioned.labels(cause).inc()
            return
        now = now_ms()
        meta = st.decode_meta(self.meta.get(user_key))
        seen = st.seen_key(user_id, event.event_id)
        if st.has_seen(meta, seen):
            self.metrics.events_duplicate.inc()
            return
        flush = self.settings.flush
        if isinstance(event, ForgetEvent):
            await self._forget(user_id, st.remember(meta, seen, now, flush.dedupe_horizon_s, flush.dedupe_max_ids), owner)
            return
        pending = st.decode_pending(self.pending.get(user_key))
        if pending is not None and pending.epoch == meta.epoch and len(pending.events) >= flush.max_pending_events:
            await self._dead_letter(key, value, BACKLOG_FULL, f"user has {len(pending.events)} pending events",
                                    "$", msg, forwarded)  # fmt: skip
            return
        meta = st.remember(meta, seen, now, flush.dedupe_horizon_s, flush.dedupe_max_ids)
        evidence = to_evidence(event)
        tokens = max(0, self.backend.count_prompt_tokens(None, (evidence,)) - self._template_tokens)
        item = st.PendingEvent(event_id=event.event_id, evidence=evidence, ts_ms=ts_to_ms(event.ts),
                               produced_ms=produced_ms, accepted_ms=now, tokens=tokens)  # fmt: skip
        pending = st.accept(pending, meta, item)
        self.meta[user_key] = st.encode(meta)
        self.pending[user_key] = st.encode(pending)
        self.metrics.events_accepted.inc()
        self.scheduler.observe(user_id, st.view_of(owner, meta, pending))

    async def _forget(self, user_id: str, meta: st.Meta, partition: int) -> None:
        """Erase the user's evidence and profile; keep only content-free dedupe metadata; tombstone."""
        key = user_id.encode("utf-8")
        new_meta = st.forget(meta)
        self.meta[key] = st.encode(new_meta)
        # Tombstones for every table key holding user text (the changelogs get them too).
        for table in (self.pending, self.profile):
            if key in table:
                del table[key]
        self.scheduler.forget(user_id)
        await self.profiles.send(key=key, value=None, partition=partition)
        self.metrics.forgets.inc()
        self.metrics.profile_publishes.labels("tombstone").inc()
        log.info("user_forgotten", user=user_ref(user_id), epoch=new_meta.epoch)

    async def _apply(self, result: FoldResult, partition: int) -> None:
        user_id = result.user_id
        key = user_id.encode("utf-8")
        meta, pending, profile = self.read_state(user_id)
        outcome = result.outcome
        now = now_ms()
        if isinstance(outcome, UpdateSuccess):
            summary_tokens = max(0, self.backend.count_prompt_tokens(outcome.summary, ()) - self._template_tokens)
            done = st.apply_success(
                meta, pending, profile, epoch=result.epoch, base_version=result.base_version,
                event_ids=result.event_ids, summary=outcome.summary, summary_tokens=summary_tokens, now_ms=now,
                model=outcome.model, prompt_version=outcome.prompt_version, backend=result.backend,
                prompt_tokens=outcome.usage.prompt_tokens, completion_tokens=outcome.usage.completion_tokens,
            )  # fmt: skip
            if isinstance(done, st.Rejected):
                self._stale(result, done.reason)
            else:
                await self._publish(user_id, key, partition, done, result, now)
                meta, pending = done.meta, done.pending
        else:
            failed = st.apply_failure(
                meta, pending, epoch=result.epoch, base_version=result.base_version, event_ids=result.event_ids,
                reason=outcome.reason, over_budget=outcome.reason == "over_budget", now_ms=now, plan=self.plan,
            )  # fmt: skip
            if isinstance(failed, st.Rejected):
                self._stale(result, failed.reason)
            else:
                self.meta[key] = st.encode(failed)
                meta = failed
                await self._record_failure(user_id, partition, failed, pending, result, outcome.reason, now)
        self.scheduler.observe(user_id, st.view_of(partition, meta, pending))
        self.scheduler.complete(user_id, result.request_id)

    def _stale(self, result: FoldResult, reason: str) -> None:
        self.metrics.updates.labels("stale").inc()
        log.info("result_stale", user=user_ref(result.user_id), request_id=result.request_id, reason=reason,
                 epoch=result.epoch, base_version=result.base_version)  # fmt: skip

    async def _publish(self, user_id: str, key: bytes, partition: int, done: st.Applied, result: FoldResult, now: int) -> None:
        self.meta[key] = st.encode(done.meta)
        if done.pending is None:
            if key in self.pending:
                del self.pending[key]
        else:
            self.pending[key] = st.encode(done.pending)
        self.profile[key] = st.encode(done.profile)
        p = done.profile
        record = self._profile_record(user_id, p)
        await self.profiles.send(key=key, value=encode_profile(record), partition=partition)
        m = self.metrics
        m.updates.labels("applied").inc()
        m.profile_publishes.labels("profile").inc()
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

    async def _record_failure(self, user_id: str, partition: int, meta: st.Meta, pending: st.Pending | None, result: FoldResult, reason: str, now: int) -> None:
        batch = (pending.events if pending else ())[: len(result.event_ids)]
        ts = [e.ts_ms for e in batch]

        def record(code: str) -> bytes:
            return encode_failure(FailureRecord(
                schema_version=FAILURE_SCHEMA_VERSION, user_id=user_id, epoch=result.epoch,
                base_version=result.base_version, reason=code, attempts=meta.attempts, event_count=len(batch),
                first_event_id=batch[0].event_id if batch else "", last_event_id=batch[-1].event_id if batch else "",
                first_event_ts=ms_to_rfc3339(min(ts)) if ts else "", last_event_ts=ms_to_rfc3339(max(ts)) if ts else "",
                failed_at=ms_to_rfc3339(now), model="", prompt_version="", backend=result.backend,
            ))  # fmt: skip

        key = user_id.encode("utf-8")
        await self.failures.send(key=key, value=record(reason), partition=partition)
        self.metrics.update_failures.labels(reason).inc()
        self.metrics.updates.labels("failed").inc()
        if meta.parked:
            # A second record marks the park itself, so operators see parked users on the same topic.
            await self.failures.send(key=key, value=record("parked"), partition=partition)
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
            meta, pending, _ = self.read_state(user_id)
            if not meta.parked:
                continue
            meta = st.redrive(meta)
            self.meta[user_id.encode("utf-8")] = st.encode(meta)
            self.scheduler.observe(user_id, st.view_of(partition, meta, pending))
            count += 1
        log.info("redrive", partition=partition, users=count)

    async def _send_result(self, partition: int, result: FoldResult) -> None:
        fut = await self.results.send(key=result.user_id.encode("utf-8"), value=encode(result), partition=partition)
        await fut  # delivered: the broker has it (or this raises and the scheduler retries the send)

    # --- running --------------------------------------------------------------------------------

    def worker(self, *, loglevel: str = "info", log_format: str = "json") -> faust.Worker:
        """A faust Worker for this app (runs the event loop until stopped).

        faust's Worker re-configures logging when it starts; it gets our configuration, so its own lines
        come out in the same format (JSON in production) as ours.
        """
        return faust.Worker(
            self.app, loglevel=loglevel, loop=self.app.loop,
            logging_config=logs.stdlib_logging_config(log_format, loglevel),
            # mode would swap sys.stdout/stderr for logger proxies, and our handler writes to sys.stderr.
            redirect_stdouts=False,
        )  # fmt: skip
