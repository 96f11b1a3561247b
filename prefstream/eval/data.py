"""Evaluation input: the AlignXplore+ benchmark format, or prefstream events plus held-out targets.

Benchmark format (`VanillaH1/AlignXplorePlus-Benchmark`, one JSON object per line):

    {"user_id"?: str, "history": [triple, ...], "target": triple, "task"?: "selection" | "recommendation",
     "ground_truth_persona"?: str}

where a triple is `{"query", "chosen", "rejected"}`. The authors' files call the id `userid`; both are
read. A missing `query` becomes the stock request, a missing `rejected` in the history the authors'
"No negative sample." (their conversions, see `schemas.evidence`); the target needs both items, since it
is scored as a choice between them.

Events format: a file of prefstream events (exactly what apps publish; decoded and turned into triples
by the worker's own code, `schemas.decode` and `schemas.evidence`) and a file of held-out target events,
one or more per user, of which the first triple with both items is each user's target.

Every bad line is an `EvalInputError` naming the file and line; nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

from prefstream.errors import PrefstreamError
from prefstream.schemas.evidence import NO_NEGATIVE, NO_POSITIVE, STOCK_QUERY, Triple
from prefstream.settings import LimitSettings

Task = Literal["selection", "recommendation"]
#: The authors' recommendation sets (`last_set` in eval/streaming_gen_preference.py): a file whose name
#: contains one of these is split in thirds, every other file in halves.
RECOMMENDATION_SETS = ("amazon", "mind", "movielens")


class EvalInputError(PrefstreamError):
    """An evaluation input file has a line that cannot be used; the message names file and line."""


class Case(msgspec.Struct, frozen=True, kw_only=True):
    """One user of an evaluation: their history (in order), the held-out target, and the task kind."""

    user_id: str
    history: tuple[Triple, ...]
    target: Triple
    task: Task = "selection"
    persona: str | None = None  # ground truth, when the data set has it (never shown to any model)


class _TripleIn(msgspec.Struct, frozen=True, kw_only=True):
    chosen: str
    query: str | None = None
    rejected: str | None = None


class _BenchmarkLine(msgspec.Struct, frozen=True, kw_only=True):
    history: list[_TripleIn]
    target: _TripleIn
    user_id: str | int | None = None
    userid: str | int | None = None
    task: Task | None = None
    ground_truth_persona: str | None = None


_decoder = msgspec.json.Decoder(_BenchmarkLine)


def task_for(path: Path) -> Task:
    """The authors' rule: recommendation (thirds) for MIND, Amazon and MovieLens files, else selection (halves)."""
    name = path.name.lower()
    return "recommendation" if any(s in name for s in RECOMMENDATION_SETS) else "selection"


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read: {exc.strerror}") from None
    for n, line in enumerate(raw.splitlines(), start=1):
        if line.strip():
            yield n, line


def _triple(t: _TripleIn, task: Task, *, where: str, target: bool) -> Triple:
    query = t.query if t.query else STOCK_QUERY.format(domain="items" if task == "recommendation" else "responses")
    if not t.chosen.strip():
        raise EvalInputError(f"{where}: `chosen` is empty")
    rejected = t.rejected if t.rejected else None
    if rejected is None:
        if target:
            raise EvalInputError(f"{where}: the target needs `rejected` (it is scored as a choice of two)")
        rejected = NO_NEGATIVE
    return Triple(query=query, chosen=t.chosen, rejected=rejected)


def load_benchmark(path: Path, *, task: Task | None = None) -> list[Case]:
    """Cases from a benchmark-format JSONL file (see the module docstring)."""
    cases: list[Case] = []
    seen: set[str] = set()
    for n, line in _lines(path):
        where = f"{path}:{n}"
        try:
            rec = _decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise EvalInputError(f"{where}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise EvalInputError(f"{where}: not a JSON object: {exc}") from None
        line_task = task or rec.task or task_for(path)
        if not rec.history:
            raise EvalInputError(f"{where}: `history` is empty (a profile needs at least one triple)")
        uid = rec.user_id if rec.user_id is not None else rec.userid
        user_id = str(uid) if uid is not None else f"line-{n}"
        if user_id in seen:
            raise EvalInputError(f"{where}: user {user_id!r} appears twice")
        seen.add(user_id)
        history = tuple(
            _triple(t, line_task, where=f"{where}: history[{i}]", target=False) for i, t in enumerate(rec.history)
        )
        cases.append(
            Case(
                user_id=user_id,
                history=history,
                target=_triple(rec.target, line_task, where=f"{where}: target", target=True),
                task=line_task,
                persona=rec.ground_truth_persona,
            )
        )
    if not cases:
        raise EvalInputError(f"{path}: no cases (the file is empty)")
    return cases


def load_events(events: Path, targets: Path, *, limits: LimitSettings, task: Task | None = None) -> list[Case]:
    """Cases from a file of prefstream events and a file of held-out target events (see the module docstring)."""
    from prefstream.schemas.decode import decode_event
    from prefstream.schemas.errors import EventRejected
    from prefstream.schemas.evidence import to_evidence

    def read(path: Path) -> dict[str, list[tuple[int, list[Triple]]]]:
        by_user: dict[str, list[tuple[int, list[Triple]]]] = {}
        for n, line in _lines(path):
            try:
                event = decode_event(None, line, limits)
            except EventRejected as exc:
                raise EvalInputError(f"{path}:{n}: event rejected: {exc}") from None
            by_user.setdefault(event.user_id, []).append((n, list(to_evidence(event).triples)))
        return by_user

    history_by_user = read(events)
    target_by_user = read(targets)
    missing = sorted(set(history_by_user) - set(target_by_user))
    if missing:
        raise EvalInputError(
            f"{targets}: no target event for {len(missing)} user(s) with history, e.g. {missing[0]!r}: "
            "add one held-out event per user (or drop the user's events)"
        )
    cases = []
    for user_id, lines in target_by_user.items():
        usable = [
            t for _, triples in lines for t in triples if t.rejected != NO_NEGATIVE and t.chosen != NO_POSITIVE
        ]
        if not usable:
            raise EvalInputError(
                f"{targets}:{lines[0][0]}: user {user_id!r} has no target with both a chosen and a rejected item "
                "(use a pair event, or an engagement/impression event with negatives)"
            )
        history = tuple(t for _, triples in history_by_user.get(user_id, []) for t in triples)
        if not history:
            raise EvalInputError(f"{targets}:{lines[0][0]}: user {user_id!r} has a target but no history in {events}")
        cases.append(Case(user_id=user_id, history=history, target=usable[0], task=task or "selection"))
    if not cases:
        raise EvalInputError(f"{targets}: no cases (the file is empty)")
    return cases
