"""Fixes for faust-streaming: no message is stepped over, in a stream or in a table's restore, and a
table's recovery does not crash when a rebalance lands between two of its steps.

Defects of faust-streaming 0.15.3 (reproductions and upstream patches in docs/reliability.md). The first
two (`faust/transport/consumer.py`) are about records the consumer took from the fetcher but never delivered:

1. **A commit passes over an abandoned message.** When a rebalance stops the flow while the drain loop
   is delivering message N, `Consumer._drain_messages` abandons N but records it as read; the following
   messages are delivered and acked, and `Consumer._new_offset` lets the commit pass over exactly one
   unacked offset at the head (`min(acked) - committed > 1`; no check at all when the committed offset
   is 0). Fix: the head check is exact (`exact_head_commit`).
2. **A fetched batch is dropped without rewinding.** `Consumer.getmany` stops handing out a fetched batch
   when the flow stops or the consumer generation changes, and never hands out records of partitions it
   considers inactive; the fetcher's position has already moved past them. Stream partitions are sought
   back to the committed offset when the rebalance ends, but a changelog partition being restored is
   not: its restore silently misses those records, and the worker then serves a state older than the
   changelog (seen as whole users reset to an empty profile). Fix: after each batch, every partition
   with records that were not handed out, or whose delivery a flow stop may have abandoned, is sought
   back to the first such record (`rewind_undelivered`). A record delivered twice is harmless: a stream
   replay is recognised by `streams.progress`, and a changelog restore applies records in offset order.
3. **Recovery seeks with a newer rebalance's offsets** (`faust/tables/recovery.py`). `Recovery.on_rebalance`
   replaces the partition sets and offsets (a new partition's offset is `None` until `_build_offsets`
   runs) and then sets `signal_recovery_start`; `_restart_recovery` notices it only when the signal's
   waiter wins a `wait_first` race against the step it awaits. A rebalance that lands right after a
   step finished goes unnoticed, and the next `_seek_offsets` seeks a partition to `None`: aiokafka
   raises `ValueError('Offset must be a positive integer')` and `Recovery` crashes the worker (seen on a
   cold start with standby replicas). Fix: `_seek_offsets` raises `RebalanceAgain`, as `_wait` would
   have, when a rebalance started since (`seek_current_generation`); recovery starts over with it.

All wrap the library's methods instead of copying them, so a faust upgrade keeps its own changes;
`install()` refuses to run against a faust that no longer has what they wrap, and
`tests/streams/test_faust_fixes.py` fails if an upgrade brings a loss back.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog

from prefstream.streams.errors import IncompatibleLibraryError

log = structlog.get_logger(__name__)

__all__ = ["exact_head_commit", "install", "installed", "rewind_undelivered", "seek_current_generation"]

_MARK = "_prefstream_fixed"
_STOPS = "_prefstream_flow_stops"
_FETCHED = "_prefstream_fetched"


# What `seek_current_generation` relies on: `_seek_offsets(self, consumer, tps, offsets, title)` reads the
# offsets before its first await, and `_restart_recovery` restarts on `RebalanceAgain`.
_SEEK_OFFSETS_PARAMS = ("self", "consumer", "tps", "offsets", "title")


def installed() -> bool:
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    return all(getattr(getattr(Consumer, name), _MARK, False) for name in ("_new_offset", "getmany")) and getattr(
        Recovery._seek_offsets, _MARK, False
    )


def install() -> None:
    """Patch faust's consumer and table recovery (idempotent). Call before the app's consumer starts."""
    from faust.tables import recovery
    from faust.transport.consumer import Consumer

    for name in ("_new_offset", "getmany", "_wait_next_records", "stop_flow", "seek_wait", "assignment"):
        if not callable(getattr(Consumer, name, None)):
            raise IncompatibleLibraryError(f"faust Consumer.{name} is gone: re-check streams/faust_fixes.py")
    seek = getattr(recovery.Recovery, "_seek_offsets", None)
    if (
        not callable(seek)
        or not isinstance(getattr(recovery, "RebalanceAgain", None), type)
        or not isinstance(getattr(recovery.Recovery, "signal_recovery_start", None), property)
        or tuple(inspect.signature(seek).parameters) != _SEEK_OFFSETS_PARAMS
    ):
        raise IncompatibleLibraryError("faust Recovery._seek_offsets changed: re-check streams/faust_fixes.py")
    if not getattr(Consumer.getmany, _MARK, False):
        Consumer._new_offset = exact_head_commit(Consumer._new_offset)
        Consumer._wait_next_records = _remember_fetched(Consumer._wait_next_records)
        Consumer.stop_flow = _count_flow_stops(Consumer.stop_flow)
        Consumer.getmany = rewind_undelivered(Consumer.getmany)
    if not getattr(seek, _MARK, False):
        recovery.Recovery._seek_offsets = seek_current_generation(seek, recovery.RebalanceAgain)


def _marked(fn: Any) -> Any:
    setattr(fn, _MARK, True)
    return fn


def exact_head_commit(original: Any) -> Any:
    """`_new_offset` that commits nothing while the committed offset itself was never processed."""

    @functools.wraps(original)
    def _new_offset(self: Any, tp: Any) -> int | None:
        try:
            acked = self._acked[tp]
            committed = self._committed_offset[tp]
            gaps = self._gap[tp]
        except AttributeError as exc:
            raise IncompatibleLibraryError(f"faust Consumer lacks {exc.name}: re-check streams/faust_fixes.py") from exc
        if acked and committed is not None and min(acked) > committed and not gaps.overlaps(committed):
            return None  # the committed offset itself was never processed: commit nothing yet
        result: int | None = original(self, tp)
        return result

    return _marked(_new_offset)


def seek_current_generation(original: Any, rebalance_again: type[Exception]) -> Any:
    """`Recovery._seek_offsets` that seeks nothing once a newer rebalance has replaced the offsets: it raises
    `rebalance_again` (faust's `RebalanceAgain`), so `_restart_recovery` starts over with that rebalance."""

    @functools.wraps(original)
    async def _seek_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
        # Checked in the same step in which the original reads the offsets (it does not await before):
        # `on_rebalance` changes them and sets the signal in one step, so the two cannot disagree.
        if self.signal_recovery_start.is_set():
            log.info("recovery_seek_skipped", reason="rebalance started", title=title)
            raise rebalance_again()
        await original(self, consumer, tps, offsets, title)

    return _marked(_seek_offsets)


def _remember_fetched(original: Any) -> Any:
    @functools.wraps(original)
    async def _wait_next_records(self: Any, timeout: float) -> Any:
        records, active = await original(self, timeout)
        setattr(self, _FETCHED, records)  # the batch `getmany` is about to hand out
        return records, active

    return _wait_next_records


def _count_flow_stops(original: Any) -> Any:
    @functools.wraps(original)
    def stop_flow(self: Any) -> None:
        setattr(self, _STOPS, getattr(self, _STOPS, 0) + 1)
        original(self)

    return stop_flow


def rewind_undelivered(original: Any) -> Any:
    """`getmany` that, once a batch is done, seeks each partition back to its first record that was not
    handed out (or whose delivery a flow stop may have cut short), so the fetcher reads it again."""

    @functools.wraps(original)
    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        setattr(self, _FETCHED, None)
        handed: dict[Any, int] = {}  # per partition: how many of the batch's records were handed out
        suspect: dict[Any, int] = {}  # per partition: the first handed-out offset a flow stop may have cut
        async for tp, message in original(self, timeout):
            stops = getattr(self, _STOPS, 0)
            yield tp, message
            # The drain loop is done with `message`; had the flow stopped meanwhile, it may have abandoned it.
            if getattr(self, _STOPS, 0) != stops:
                suspect.setdefault(tp, message.offset)
            handed[tp] = handed.get(tp, 0) + 1
        await _rewind(self, getattr(self, _FETCHED, None) or {}, handed, suspect)

    return _marked(getmany)


async def _rewind(consumer: Any, fetched: Mapping[Any, list[Any]], handed: dict[Any, int], suspect: dict[Any, int]) -> None:
    targets = dict(suspect)
    for tp, records in fetched.items():
        n = handed.get(tp, 0)
        if n < len(records):
            offset = records[n].offset
            targets[tp] = min(offset, targets.get(tp, offset))
    if not targets:
        return
    assigned = consumer.assignment()
    targets = {tp: offset for tp, offset in targets.items() if tp in assigned}
    for tp, offset in targets.items():
        log.info("consumer_rewound", topic=tp.topic, partition=tp.partition, offset=offset)
    if targets:
        # `seek_wait`, not `seek`: the aiokafka consumer lives on faust's consumer thread, and only this call
        # runs the seek there (faust's own recovery seeks this way); it also resets faust's read offsets.
        await consumer.seek_wait(targets)
