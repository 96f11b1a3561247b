"""Which triples each profile sees: the authors' streaming splits, generalised to k steps. Pure.

Source: `eval/streaming_gen_preference.py` (github.com/rongtao7/AlignXplorePlus @ 52e8c445). With two
steps, a selection set folds `history[:n//2]` then `history[n//2:]`; a recommendation set folds
`history[:n//3]` then `history[n//3 : 2*(n//3)]` (its last third is never used). The full-history variant
sees the same triples in one update, so streaming and full history are compared like for like.

For k steps the used part is cut into k contiguous chunks at `i*m//k` (m = triples used), which gives
exactly the authors' two chunks for k = 2. A chunk can be empty when k > m: that step folds nothing and
the summary carries over unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefstream.eval.data import Task
from prefstream.schemas.evidence import Triple


def used(history: Sequence[Triple], task: Task) -> tuple[Triple, ...]:
    """The triples any profile of this case is built from."""
    n = len(history)
    return tuple(history[: 2 * (n // 3)] if task == "recommendation" else history)


def chunks(history: Sequence[Triple], task: Task, steps: int) -> list[tuple[Triple, ...]]:
    """The evidence of each streaming step, in order."""
    part = used(history, task)
    m = len(part)
    return [part[i * m // steps : (i + 1) * m // steps] for i in range(steps)]


def early_probes(history: Sequence[Triple], task: Task, steps: int, count: int) -> tuple[Triple, ...]:
    """Probe pairs from early history: the first `count` triples of the first step that have a real negative."""
    from prefstream.schemas.evidence import NO_NEGATIVE, NO_POSITIVE

    first = chunks(history, task, steps)[0]
    return tuple(t for t in first if t.rejected != NO_NEGATIVE and t.chosen != NO_POSITIVE)[:count]
