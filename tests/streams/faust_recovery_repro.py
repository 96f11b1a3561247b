"""Deterministic reproduction of faust-streaming's recovery seeking a changelog partition to `None`.

Run as a subprocess (faust keeps process-global state):

    python -m tests.streams.faust_recovery_repro BOOTSTRAP SOURCE_TOPIC GROUP [--patched]

`Recovery._restart_recovery` (`faust/tables/recovery.py`) works through one rebalance in steps, each
awaited with `Recovery._wait`, which raises `RebalanceAgain` only when the rebalance signal's waiter
finished before the step did. `Recovery.on_rebalance` replaces the partition sets and offsets at once and
then sets that signal; a partition new to the standbys gets the offset `None` until `_build_offsets`
fills it in. When that lands right after a step finished, `_restart_recovery` carries on with the new
sets and seeks a partition to `None`; aiokafka's `seek` raises `ValueError('Offset must be a positive
integer')` on the consumer thread, and if that error comes back before the signal's waiter does,
`Recovery` crashes (the standby benchmark's cold start, docs/reliability.md).

The run: a plain faust app (one table, two changelog partitions with records, so recovery has work) and
one worker. Right after the active restore's end is awaited (`_wait` returns), it replays the rebalance
a second worker joining brings: `Recovery.on_rebalance` for the same generation with changelog partition
1 moved from the actives to the standbys. It prints one JSON line: every seek faust asked for with an
offset aiokafka refuses (not a non-negative int), the changelog seeks after the replay, whether
`Recovery` crashed (a race: the seek's error must come back before the rebalance signal's waiter), and
whether recovery then completed. With
`--patched`, `streams.faust_fixes.install()` runs first, as the worker does.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from typing import Any

PARTITIONS = 2
RECORDS = 20  # per changelog partition: the active restore has something to wait for
TABLE = "repro"


def changelog_topic(group: str) -> str:
    return f"{group}-{TABLE}-changelog"


def run(bootstrap: str, source: str, group: str) -> dict[str, Any]:
    import faust
    from faust.tables.recovery import Recovery
    from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
    from faust.types import TP
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for p in range(PARTITIONS):
        for i in range(RECORDS):
            producer.send(changelog_topic(group), key=f"k{p}-{i}".encode(), value=b"v", partition=p)
    producer.flush()
    producer.close()

    bad_seeks: list[list[Any]] = []  # [topic, partition, offset] faust asked for that aiokafka's `seek` refuses
    seeks_after: list[list[Any]] = []  # [partition, offset] of the changelog, after the replayed rebalance
    # Recorded where faust's recovery hands the offsets over (in the seeking task's first step), not on the
    # consumer thread: whether the thread still runs a seek the rebalance signal has meanwhile cancelled
    # is a race, and so is the crash that follows; the request is not.
    seek_wait = AIOKafkaDriverConsumer.seek_wait

    async def recorded_seek_wait(self: Any, partitions: Any) -> None:
        for tp, offset in partitions.items():
            if not isinstance(offset, int) or offset < 0:
                bad_seeks.append([tp.topic, tp.partition, offset])
            if steps and tp.topic == changelog_topic(group):
                seeks_after.append([tp.partition, offset])
        await seek_wait(self, partitions)

    AIOKafkaDriverConsumer.seek_wait = recorded_seek_wait

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = faust.App(
        group, env={}, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="faust-recovery-repro-"), autodiscover=False,
        topic_partitions=PARTITIONS, table_standby_replicas=1, consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
    )  # fmt: skip
    app.Table(TABLE, partitions=PARTITIONS, key_type=bytes, value_type=bytes)
    topic = app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    steps: list[str] = []

    @app.agent(topic)
    async def agent(stream: Any) -> None:
        async for _ in stream:
            pass

    wait = Recovery._wait

    async def _wait(self: Any, coro: Any, timeout: Any = None) -> None:
        frame = getattr(coro, "cr_frame", None)
        restore_end = frame is not None and frame.f_locals.get("self") is self.signal_recovery_end
        await wait(self, coro, timeout)
        if restore_end and not steps:
            # The active restore's end was awaited and nothing said "rebalance again": a second worker
            # joining lands now, as it can between two steps. Its assignment takes changelog partition 1
            # over as active and leaves this worker a standby of it.
            steps.append("rebalance")
            moved = TP(changelog_topic(group), 1)
            actives = {tp for tp in app.assignor.assigned_actives() if tp != moved}
            app.assignor.assigned_actives = lambda: actives  # type: ignore[method-assign]
            app.assignor.assigned_standbys = lambda: {moved}  # type: ignore[method-assign]
            await self.on_rebalance(set(app.consumer.assignment()), set(), set(), app.consumer_generation_id)

    Recovery._wait = _wait
    result: dict[str, Any] = {}

    @app.task
    async def driver() -> None:
        recovery = app.tables.recovery
        for _ in range(1200):  # the group join, the replayed rebalance, then recovery completing (or crashing)
            if recovery.crashed or (steps and recovery.completed.is_set() and not recovery.in_recovery):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a seek sent to the consumer thread comes back meanwhile
        result["completed"] = recovery.completed.is_set() and not recovery.crashed
        asyncio.ensure_future(worker.stop())

    worker = faust.Worker(app, loop=loop, loglevel="warning", redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        shutil.rmtree(app.conf.datadir, ignore_errors=True)
    reason = app.tables.recovery.crash_reason
    return {"steps": steps, "bad_seeks": bad_seeks, "seeks_after": seeks_after, "crashed": None if reason is None else repr(reason),
            "completed": result.get("completed", False)}  # fmt: skip


def main(argv: list[str]) -> int:
    bootstrap, source, group = argv[:3]
    if "--patched" in argv:
        from prefstream.streams import faust_fixes

        faust_fixes.install()
    result = run(bootstrap, source, group)
    print("\nRESULT " + json.dumps(result, default=str), flush=True)  # its own line: a crashed worker leaves a terminal escape
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
