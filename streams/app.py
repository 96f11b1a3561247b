"""The worker: one faust agent over three co-partitioned topics, the fold scheduler, the web surface.

Each source message goes through `StreamApp.process`, top to bottom:

1. `SourceTracker.classify`: the next offset, a replay of one the state already includes, or a jump;
2. a jump is resolved first: the skipped offsets are read back from the broker and processed in order
   (`streams.progress`), so no consumer defect can step over a message silently;
3. the message is dispatched by topic: events and forwarded events to `Ingest` (event -> validated
   record -> per-user buffer), results and commands to `Apply` (result -> profile -> profiles topic);
4. the offset is recorded in the state, in the same changelog as the writes it covers, by the message's
   last write (a stamped user record, or else the progress record: `streams.progress`).

One agent with concurrency 1 consumes the events topic, `{id}-repartition` and `{id}-results`, so
every state write happens inside the processing of one source message, on that message's partition
(faust's RocksDB store requires it), and no two writes to one user interleave. The agent never awaits
the model: the fold scheduler (`streams.scheduler`) runs the updates and sends their results to
`{id}-results`, so offsets commit and rebalances complete in milliseconds whatever the model does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import structlog
from faust.types import TP, EventT

from prefstream.models.interface import PreferenceModel
from prefstream import logs
from prefstream.settings import Settings
from prefstream.topics import compacted_configs
from prefstream.streams import faust_fixes
from prefstream.streams import state as st
from prefstream.streams.apply import Apply
from prefstream.streams.backfill_ingest import BackfillIngest
from prefstream.streams.ingest import Ingest
from prefstream.streams.inspector import register_inspector
from prefstream.streams.metrics import StreamMetrics
from prefstream.streams.partitioning import partition_for
from prefstream.streams.policy import FlushPolicy, UserView
from prefstream.streams.records import FoldResult, encode
from prefstream.streams.progress import GapReader, SourceRecord, SourceTracker, fill_gap
from prefstream.streams.scheduler import FoldScheduler
from prefstream.streams.store import Store
from prefstream.streams.tenancy import Tenancy
from prefstream.streams.topology import ROCKSDB_OPTIONS, STATE_TABLE, faust_options, internal_topics
from prefstream.streams.web import BrokerProbe, register_routes

log = structlog.get_logger(__name__)

__all__ = ["StreamApp"]

#: How long reading a gap back from the broker may take before the worker stops instead of going on.
GAP_READ_TIMEOUT_S = 60.0


class StreamApp:
    """The worker's faust app and everything wired to it. Build, then run with `worker()`."""

    def __init__(self, settings: Settings, backend: PreferenceModel, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        faust_fixes.install()  # before the consumer's first commit
        self.settings = settings
        self.backend = backend
        self.backend_ready = False
        self.fatal: BaseException | None = None  # why the worker stopped itself
        self._worker: faust.Worker | None = None
        self.partitions = settings.topics.partitions
        self.metrics = StreamMetrics()
        self.names = internal_topics(settings)
        t = settings.topics
        self.events_topic = t.events
        app = self.app = faust.App(settings.worker.app_id, loop=loop, **faust_options(settings))
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.source = app.topic(t.events, self.names["repartition"], self.names["results"], self.names["backfill"], **raw)
        repartition = app.topic(self.names["repartition"], partitions=self.partitions, **raw)
        self.results = app.topic(self.names["results"], partitions=self.partitions, **raw)
        profiles = app.topic(t.profiles, partitions=self.partitions, **raw)
        failures = app.topic(t.failures, partitions=self.partitions, **raw)
        updates = app.topic(t.updates, partitions=self.partitions, **raw)
        dlq = app.topic(t.dlq, **raw)
        table = app.Table(
            STATE_TABLE, partitions=self.partitions, key_type=bytes, value_type=bytes,  # raw codec: plain keys
            extra_topic_configs=compacted_configs(t), options=ROCKSDB_OPTIONS,
        )  # fmt: skip
        self.store = Store(table)
        self.tenancy = Tenancy.from_settings(settings.tenants, self.metrics.registry)
        flush = settings.flush
        self.plan = st.RetryPlan(flush.retry_limit, flush.degraded_attempts, flush.retry_backoff_s, flush.retry_backoff_max_s)
        self.scheduler = FoldScheduler(
            backend=backend, policy=FlushPolicy.from_settings(flush, backend.prompt_token_budget, settings.backfill.max_events), flush=flush,
            plan=self.plan, read_state=self.read_state, send_result=self._send_result, metrics=self.metrics,
            user_key=logs.user_ref, on_fatal=self._fatal, tenancy=self.tenancy,
            backfill_priority=settings.backfill.priority,
        )  # fmt: skip
        self.roles = {t.events: "events", self.names["repartition"]: "repartition", self.names["results"]: "results",
                      self.names["backfill"]: "backfill"}  # fmt: skip
        self.tracker = SourceTracker(self.store, self.roles, self._committed)
        self.gaps = GapReader(self._side_consumer, GAP_READ_TIMEOUT_S)
        self.probe = BrokerProbe(self._side_consumer)
        self.ingest = Ingest(
            settings=settings, store=self.store, tracker=self.tracker, scheduler=self.scheduler, backend=backend,
            metrics=self.metrics, repartition=repartition, dlq=dlq, profiles=profiles, events_topic=t.events,
            partitions=self.partitions, tenancy=self.tenancy,
        )  # fmt: skip
        self.backfill = BackfillIngest(self.ingest, hold_ms=int(settings.backfill.hold_s * 1000))
        self.apply = Apply(
            store=self.store, scheduler=self.scheduler, backend=backend, metrics=self.metrics, plan=self.plan,
            profiles=profiles, failures=failures, updates=updates, partitions=self.partitions,
            history_versions=settings.audit.history_versions, include_summary=settings.audit.updates_include_summary,
            tenancy=self.tenancy,
        )  # fmt: skip
        self.metrics.callbacks.pending = self.scheduler.pending_figures
        self.metrics.callbacks.lag = self.consumer_lag
        self._wire()
        register_routes(app, self)
        if settings.audit.inspector_enabled:
            register_inspector(app, self)

    # --- wiring -----------------------------------------------------------------------------------

    def _wire(self) -> None:
        app = self.app

        @app.agent(self.source, name="state")
        async def state_agent(stream: faust.StreamT[bytes]) -> None:
            async for event in stream.events():
                try:
                    await self.process(_record_of(event))
                except Exception as exc:
                    # A bug or an unreadable gap, not bad input (bad input is dead-lettered): stop rather than
                    # step over the offset.
                    msg = event.message
                    log.exception("agent_failed", topic=msg.topic, partition=msg.partition, offset=msg.offset)
                    self._fatal(exc)
                    return  # the message stays unacked: the next owner processes it again

        @app.task
        async def fold_scheduler() -> None:
            await self.start_backend()
            await self.scheduler.run()

        @app.task
        async def broker_probe() -> None:
            await self.probe.run()

        @app.on_partitions_revoked.connect
        async def on_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
            self.scheduler.on_revoked()

        @app.on_partitions_assigned.connect
        async def on_assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
            self.tracker.reset()
            self.scheduler.on_assigned({tp.partition for tp in assigned if tp.topic == self.events_topic})

        @app.on_rebalance_complete.connect
        async def on_rebalance_complete(sender: Any, **_: Any) -> None:
            await self._recovered()

        @app.on_before_shutdown.connect
        async def on_shutdown(sender: Any, **_: Any) -> None:
            await self.scheduler.stop()
            await self.backend.aclose()
            await self.gaps.aclose()
            await self.probe.aclose()

    async def start_backend(self) -> None:
        if not self.backend_ready:
            await self.backend.start()
            template = self.backend.count_prompt_tokens(None, ())
            self.ingest.template_tokens = self.apply.template_tokens = template
            self.backend_ready = True

    def _fatal(self, exc: BaseException) -> None:
        """Stop the worker for good (a dead backend, a bug, an unreadable gap): the orchestrator restarts it,
        and the restarted worker resumes from the committed offsets. `prefstream worker` exits non-zero."""
        if self.fatal is not None:
            return
        self.fatal = exc
        log.error("worker_fatal", error=type(exc).__name__)
        asyncio.ensure_future(self._stop())

    async def _stop(self) -> None:
        await (self._worker.stop() if self._worker is not None else self.app.stop())

    def _side_consumer(self) -> Any:
        """A group-less aiokafka consumer for reading gaps and probing the broker."""
        from aiokafka import AIOKafkaConsumer

        from prefstream.kafka.security import aiokafka_kwargs

        k = self.settings.kafka
        return AIOKafkaConsumer(
            bootstrap_servers=k.bootstrap_servers, client_id=f"{k.client_id}-side", group_id=None,
            enable_auto_commit=False, auto_offset_reset="none", **aiokafka_kwargs(k),
        )  # fmt: skip

    def _committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset as faust last saw it (after the seek every assignment ends with)."""
        committed = self.app.consumer._committed_offset.get(TP(topic, partition))
        return None if committed is None else int(committed)

    async def _recovered(self) -> None:
        """After recovery: rebuild the scheduler's views from the state and gate on unapplied results."""
        owned = self.scheduler.owned
        views: dict[str, UserView] = {}
        for user_id, user in self.store.users():
            partition = partition_for(user_id, self.partitions)
            if partition in owned:
                view = st.view_of(partition, user.meta, user.pending)
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

    # --- the agent's work -----------------------------------------------------------------------

    async def process(self, record: SourceRecord) -> None:
        """Process one source message (steps in the module docstring)."""
        kind, start = self.tracker.classify(record)
        source = self.roles[record.topic]
        if kind == "gap":
            filled = await fill_gap(self.gaps, record, start, self._dispatch_next)
            self._ack_offsets(record.topic, record.partition, range(start, record.offset))
            m = self.metrics
            m.offset_gaps.labels(source).inc()
            m.gap_records_recovered.labels(source).inc(filled.recovered)
            m.gap_offsets_empty.labels(source).inc(filled.empty)
            m.gap_offsets_expired.labels(source).inc(filled.expired)
            log.warning("offset_gap_resolved", source=source, partition=record.partition, start=start,
                        end=record.offset, recovered=filled.recovered, empty=filled.empty,
                        expired=filled.expired)  # fmt: skip
        elif kind == "replay":
            self.metrics.records_replayed.labels(source).inc()
        await self._dispatch(record, replay=kind == "replay")

    async def _dispatch_next(self, record: SourceRecord) -> None:
        await self._dispatch(record, replay=False)

    async def _dispatch(self, record: SourceRecord, *, replay: bool) -> None:
        source = self.roles[record.topic]
        self.tracker.begin(record)
        if source == "events":
            await self.ingest.on_event(record, replay=replay)
        elif source == "repartition":
            await self.ingest.on_forwarded(record, replay=replay)
        elif source == "backfill":
            await self.backfill.on_chunk(record, replay=replay)
        else:
            await self.apply.on_command(record.value, record.partition, record.offset, replay=replay)
        self.tracker.processed(record)

    def _ack_offsets(self, topic: str, partition: int, offsets: range) -> None:
        """Tell faust the skipped offsets are done, so its (exact, `streams.faust_fixes`) commit moves on."""
        consumer = self.app.consumer
        tp = TP(topic, partition)
        for offset in offsets:
            consumer.ack(faust.types.Message(topic, partition, offset, 0.0, 0, None, None, None, None, tp=tp))

    # --- state access ---------------------------------------------------------------------------

    def read_state(self, user_id: str) -> tuple[st.Meta, st.Pending | None, st.ProfileState | None]:
        user = self.store.user(user_id)
        return user.meta, user.pending, self.store.profile(user_id)

    async def _send_result(self, partition: int, result: FoldResult) -> None:
        fut = await self.results.send(key=result.user_id.encode("utf-8"), value=encode(result), partition=partition)
        await fut  # delivered: the broker has it (or this raises and the scheduler retries the send)

    # --- health ---------------------------------------------------------------------------------

    def backend_fault(self) -> str | None:
        """Why the started backend is unhealthy (its error's type), or None when it is healthy."""
        try:
            self.backend.check_health()
        except Exception as exc:
            return type(exc).__name__
        return None

    def readiness(self) -> tuple[bool, str]:
        """Ready only while this worker can do its job, and why not otherwise."""
        if not self.backend_ready:
            return False, "model backend starting"
        fault = self.backend_fault()
        if fault is not None:
            return False, f"model backend unhealthy: {fault}"
        if not self.probe.connected():
            return False, f"broker unreachable: {self.probe.last_error or 'no answer yet'}"
        if not self.scheduler.owned and not self._standbys():
            return False, "no partitions assigned"  # neither active nor standby: an idle member of the group
        if self.scheduler.paused:
            return False, "rebalancing"
        return True, "ok"

    def _standbys(self) -> bool:
        try:
            return bool(self.app.assignor.assigned_standbys())
        except Exception:  # before the first assignment
            return False

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        lag: dict[tuple[str, int], int] = {}
        consumer = self.app._consumer
        if consumer is None:
            return lag
        for (topic, partition), offset in self.tracker.positions().items():
            if partition not in self.scheduler.owned:
                continue
            try:
                hw = consumer.highwater(TP(topic, partition))
            except Exception:
                continue
            if hw is not None:
                lag[(topic, partition)] = max(0, int(hw) - offset - 1)
        return lag

    # --- running --------------------------------------------------------------------------------

    def worker(self, *, loglevel: str = "info", log_format: str = "json") -> faust.Worker:
        """A faust Worker for this app (runs the event loop until stopped).

        faust's Worker re-configures logging when it starts; it gets our configuration, so its own lines
        come out in the same format (JSON in production) as ours.
        """
        self._worker = _Worker(
            self.app, loglevel=loglevel, loop=self.app.loop,
            logging_config=logs.stdlib_logging_config(log_format, loglevel, self.settings.worker.log_repeat_window_s),
            # mode would swap sys.stdout/stderr for logger proxies, and our handler writes to sys.stderr.
            redirect_stdouts=False,
        )  # fmt: skip
        return self._worker


class _Worker(faust.Worker):
    """faust's Worker, with a process title that says what runs (`ps`, `pgrep -f "prefstream worker"`)."""

    def _setproctitle(self, info: str, *, ident: str = "prefstream worker") -> None:
        super()._setproctitle(info, ident=ident)

    def _repr_name(self) -> str:
        return "Worker"  # faust's log lines keep their `[^Worker]` label (operators and tests match on it)


def _record_of(event: EventT) -> SourceRecord:
    msg = event.message
    timestamp_ms = int(msg.timestamp * 1000) if msg.timestamp else 0
    return SourceRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value, timestamp_ms)
