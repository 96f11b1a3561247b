"""A fix for faust-streaming's consumer: a commit never passes over a message that was not processed.

The defect (faust-streaming 0.15.3, `faust/transport/consumer.py`; reproduction and upstream patch in
docs/reliability.md): when a rebalance stops the flow while the drain loop is delivering message N,
`Consumer._drain_messages` abandons N but records it as read, the following messages of the batch
are delivered and acked, and `Consumer._new_offset` lets the commit pass over exactly one unacked
offset at the head (`min(acked) - committed > 1`; and no check at all when the committed offset is 0).
N is then committed without ever reaching an agent.

The fix makes the head check exact: nothing is committed while the committed offset itself is
neither acked nor a known gap. The abandoned message is then read again from the committed offset
by the seek every rebalance ends with (`Recovery._resume_streams` -> `perform_seek`), and the
worker's own offset tracking (`streams.progress`) processes it at once when it sees the jump.

It wraps the library's method instead of copying it, so a faust upgrade keeps its own changes;
`install()` refuses to run against a faust whose consumer no longer has the state it reads, and
`tests/streams/test_faust_fixes.py` fails if an upgrade brings the loss back.
"""

from __future__ import annotations

import functools
from typing import Any

from streams.errors import IncompatibleLibraryError

__all__ = ["install", "installed"]

_MARK = "_prefstream_exact_head"
_CONSUMER_STATE = ("_acked", "_committed_offset", "_gap")


def installed() -> bool:
    from faust.transport.consumer import Consumer

    return bool(getattr(Consumer._new_offset, _MARK, False))


def install() -> None:
    """Patch faust's `Consumer._new_offset` (idempotent). Call before the app's consumer commits."""
    from faust.transport.consumer import Consumer

    original = getattr(Consumer, "_new_offset", None)
    if original is None:
        raise IncompatibleLibraryError("faust Consumer._new_offset is gone: re-check streams/faust_fixes.py")
    if getattr(original, _MARK, False):
        return

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

    setattr(_new_offset, _MARK, True)
    Consumer._new_offset = _new_offset
