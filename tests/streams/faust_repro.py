"""Deterministic reproduction of faust-streaming's lost message in a rebalance (docs/reliability.md).

Run as a subprocess (faust keeps process-global state):

    python -m tests.streams.faust_repro BOOTSTRAP TOPIC GROUP [--generation] [--patched | --exact-head-only]

It produces `COUNT` records to a one-partition topic, then runs a plain faust agent over it and
replays, at a chosen offset, the interleaving a real rebalance produces:

1. the consumer's drain loop holds a fetched batch and has just delivered offset `DROP - 1`;
2. a rebalance starts: faust's revoke handler calls `consumer.stop_flow()` and
   `app.flow_control.suspend()` (`faust/app/base.py`, `_on_partitions_revoked`);
3. the drain loop's next delivery (offset `DROP`) blocks on flow control, `suspend_flow` wins the
   `wait_first` race, the delivery is cancelled, and the read offset moves past `DROP` anyway
   (`faust/transport/consumer.py`, `Consumer._drain_messages`);
4. recovery resumes the flow to read changelogs (`faust/tables/recovery.py`, `Recovery._restart_recovery`)
   while the drain loop still holds the rest of the batch: `DROP + 1 ...` are delivered and acked;
5. a commit: `Consumer._new_offset` lets the committed offset pass over exactly one unacked offset at
   the head (`min(acked) - committed > 1`), so `DROP` is committed without ever being processed.

The triggers hook faust's own bookkeeping (the read-offset map), not wall-clock timing, so the run is
the same every time. It prints one JSON line: the offsets the agent saw and the committed offset
after every message that arrives was acked. With `--patched`, `streams.faust_fixes.install()` runs first, as the worker does;
with `--exact-head-only`, only its commit fix.
"""

from __future__ import annotations

import asyncio
import shutil
import json
import sys
from collections import defaultdict
from typing import Any

COUNT = 10
DROP = 3


class _Trigger(defaultdict):  # type: ignore[type-arg]
    """The consumer's read-offset map, firing the rebalance steps when faust records an offset."""

    def __init__(self, on_set: Any) -> None:
        super().__init__(lambda: None)
        self.on_set = on_set

    def __setitem__(self, tp: Any, offset: Any) -> None:
        super().__setitem__(tp, offset)
        self.on_set(tp, offset)


def _app(bootstrap: str, group: str) -> Any:
    import tempfile

    import faust

    # faust creates `{id}-data` in the working directory unless told otherwise: keep it out of the repository.
    return faust.App(
        group, env={}, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="faust-repro-"),
        autodiscover=False, topic_partitions=1, consumer_auto_offset_reset="earliest",
        broker_commit_interval=3600.0, processing_guarantee="at_least_once",
    )  # fmt: skip


def run(bootstrap: str, topic_name: str, group: str, scenario: str = "abandon") -> dict[str, Any]:
    """Replay the interleaving; return what the agent saw and the offset the group committed.

    `abandon`: the drain loop abandons one delivery (module docstring). `generation`: the consumer
    generation changes while a fetched batch is being handed out (a rebalance completing meanwhile):
    `Consumer.getmany` drops the rest of the batch, and the fetcher's position is already past it."""
    import faust
    from faust.types import TP
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(COUNT):
        producer.send(topic_name, key=b"k", value=str(i).encode(), partition=0)
    producer.flush()
    producer.close()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = _app(bootstrap, group)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen: list[int] = []
    steps: list[str] = []

    def on_read_offset(tp: Any, offset: int) -> None:
        consumer = app.consumer
        if scenario != "abandon":
            return
        if offset == DROP - 1 and not steps:
            # A rebalance starts while the drain loop holds the batch: flow control is suspended at once,
            # so the next delivery blocks on it, and the consumer's flow stops right after (the revoke
            # handler does both; here the second lands while the delivery of DROP is blocked).
            steps.append("revoke")
            app.flow_control.suspend()
            asyncio.get_running_loop().call_soon(consumer.stop_flow)
        elif offset == DROP and steps == ["revoke"]:
            steps.append("resume")  # recovery resumes the flow (to read changelogs) before it seeks
            app.flow_control.resume()
            consumer.resume_flow()

    @app.agent(topic)
    async def agent(stream: Any) -> None:
        async for event in stream.events():
            seen.append(event.message.offset)

    @app.task
    async def driver() -> None:
        consumer = app.consumer
        tp = TP(topic_name, 0)
        for _ in range(1200):  # until the interleaving was replayed (the group join comes first)
            if steps:
                break
            await asyncio.sleep(0.05)
        for _ in range(200):  # then until the last message is acked (faust acks it when the next one is awaited)
            if COUNT - 1 in consumer._acked_index[tp]:
                break
            await asyncio.sleep(0.05)
        quiet = 0
        while quiet < 60:  # and nothing more arrives for 3 s (a rewound partition is fetched again within 1.5 s)
            count = len(seen)
            await asyncio.sleep(0.05)
            quiet = quiet + 1 if len(seen) == count else 0
        await consumer.commit()  # commits the consecutive run at the head
        await consumer.commit()  # and then whatever the head check lets through
        asyncio.ensure_future(worker.stop())

    if scenario == "generation":
        # The consumer generation changes while the drain loop is handing out a fetched batch (a rebalance
        # completing meanwhile): `Consumer.getmany` drops the rest of the batch, and the fetcher's position is
        # already past it. Triggered when faust records offset DROP - 1 as read.
        def on_generation(tp: Any, offset: int) -> None:
            if offset == DROP - 1 and not steps:
                steps.append("generation")
                app.consumer_generation_id += 1

        app.consumer._read_offset = _Trigger(on_generation)
    else:
        app.consumer._read_offset = _Trigger(on_read_offset)  # before the fetcher's drain loop binds it
    worker = faust.Worker(app, loop=loop, loglevel="warning", redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        shutil.rmtree(app.conf.datadir, ignore_errors=True)
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    committed = reader.committed(TopicPartition(topic_name, 0))
    reader.close()
    return {"seen": seen, "steps": steps, "committed": committed}


def main(argv: list[str]) -> int:
    bootstrap, topic, group = argv[:3]
    scenario = "generation" if "--generation" in argv else "abandon"
    if "--patched" in argv:
        from prefstream.streams import faust_fixes

        faust_fixes.install()
    elif "--exact-head-only" in argv:
        from faust.transport.consumer import Consumer

        from prefstream.streams import faust_fixes

        Consumer._new_offset = faust_fixes.exact_head_commit(Consumer._new_offset)
    print("RESULT " + json.dumps(run(bootstrap, topic, group, scenario)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
