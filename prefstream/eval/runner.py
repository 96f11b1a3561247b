"""Run an evaluation: build every profile, then ask the downstream judge about every one.

1. Profiles. For each profile method (the extractive baseline, and the preference model under test)
   and each case: the full-history variant (one update over the used history) and the streaming variant
   (k updates, each folding one chunk into the previous summary). Updates go through the same
   `PreferenceModel.update` the stream calls, so the same prompt builder, parser and backend run. As in
   the stream, a failed update keeps the previous summary (and is counted). A prompt over the backend's
   budget drops its oldest half, repeatedly (the authors' rule), and the dropped triples are counted.
2. Judgments. For every method and step, the held-out target and the early probe pairs are put to the
   judge with the authors' selection prompt, A/B order seeded per (user, probe) so every method sees the
   same order. The baselines are judged the same way: no profile (an empty `<Preference>`), the raw
   history in its place, and the ground-truth persona when the data has one (an upper bound).

Every finished unit is a checkpoint record (`eval.checkpoint`); a resumed run skips them. A failure of
one request (a malformed generation, a prompt over the judge's context) is a result and is recorded; a
backend that is dead or unreachable stops the run with a one-line error, and nothing is recorded for the
units it could not do, so running the same command again once it is back finishes the run.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from prefstream.eval import splits
from prefstream.eval.checkpoint import JudgmentRecord, ProfileRecord, RunDir, judgment_key, profile_key
from prefstream.eval.data import Case
from prefstream.eval.judges import Judge
from prefstream.eval.selection import SelectionPrompt, parse_answer, raw_history_preference
from prefstream.models.errors import BackendUnavailableError, FailureReason
from prefstream.models.interface import PreferenceModel, UpdateRequest, UpdateSuccess
from prefstream.schemas.evidence import Evidence, Triple, seeded_index

FULL = 0  # the step number of the full-history variant


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run: steps of the streaming variant, early probes per case, the seed of the A/B order."""

    steps: int = 2
    probes: int = 2
    seed: int = 0
    concurrency: int = 32
    progress: bool | None = None  # None: a bar only on a terminal


def _hide_bar(plan: Plan) -> bool | None:
    # tqdm's `disable=None` hides the bar when stderr is not a terminal.
    return None if plan.progress is None else not plan.progress


def stream_label(method: str) -> str:
    return f"{method}/stream"


def full_label(method: str) -> str:
    return f"{method}/full"


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("\n".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def probes_of(case: Case, plan: Plan) -> list[tuple[str, Triple]]:
    early = splits.early_probes(case.history, case.task, plan.steps, plan.probes)
    return [("target", case.target)] + [(f"early-{i + 1}", t) for i, t in enumerate(early)]


async def _fold(model: PreferenceModel, request_id: str, user_id: str, previous: str | None,
                triples: tuple[Triple, ...], base_version: int) -> tuple[str | None, str | None, int]:
    """One update: (new summary or None, failure reason or None, triples dropped to fit the budget)."""
    dropped = 0
    while len(triples) > 1 and model.count_prompt_tokens(previous, (Evidence(event_id="x", triples=triples),)) > (
        model.prompt_token_budget
    ):
        keep = triples[-(len(triples) // 2):]
        dropped += len(triples) - len(keep)
        triples = keep
    request = UpdateRequest(
        request_id=request_id, user_id=user_id, epoch=0, base_version=base_version, previous_summary=previous,
        evidence=(Evidence(event_id=f"{request_id}:e", triples=triples),),
    )
    outcome = await model.update(request)
    if isinstance(outcome, UpdateSuccess):
        return outcome.summary, None, dropped
    # A backend that is down fails every update alike: stop (the run resumes later) instead of recording
    # a run's worth of failures that say nothing about the profiles.
    model.check_health()
    if outcome.reason == FailureReason.BACKEND_UNAVAILABLE:
        raise BackendUnavailableError(f"the {model.name} preference backend is unavailable: {outcome.message}")
    return None, outcome.reason, dropped


async def build_profiles(run: RunDir, cases: Sequence[Case], models: dict[str, PreferenceModel], plan: Plan,
                         count_tokens: Callable[[str], int]) -> None:
    """Phase 1: every profile step of every method and case (skipping those already recorded)."""
    units = [(name, i) for name in models for i in range(len(cases))]
    total = sum(1 + plan.steps for _ in units)
    done = sum(1 for k in run.records if k[0] == "profile")
    bar = tqdm(total=total, initial=min(done, total), desc="profiles", unit="update", disable=_hide_bar(plan))
    gate = asyncio.Semaphore(max(1, min(plan.concurrency, *(m.max_concurrency for m in models.values()))))

    def record(name: str, i: int, step: int, previous: str | None, summary: str | None, failure: str | None,
               dropped: int, empty: bool) -> str | None:
        current = summary if summary is not None else previous
        status = "no_evidence" if empty else ("ok" if failure is None else "failed")
        run.add(ProfileRecord(method=name, case=i, step=step, summary=current, status=status, failure=failure,
                              summary_tokens=count_tokens(current) if current else 0, dropped=dropped))
        bar.update(1)
        return current

    async def one(name: str, i: int) -> None:
        model, case = models[name], cases[i]
        async with gate:
            if profile_key(name, i, FULL) not in run.records:
                summary, failure, dropped = await _fold(
                    model, f"eval:{name}:{i}:full", case.user_id, None, splits.used(case.history, case.task), 0)
                record(name, i, FULL, None, summary, failure, dropped, False)
            previous: str | None = None
            for step, chunk in enumerate(splits.chunks(case.history, case.task, plan.steps), start=1):
                done_rec = run.records.get(profile_key(name, i, step))
                if isinstance(done_rec, ProfileRecord):
                    previous = done_rec.summary
                    continue
                if not chunk:
                    previous = record(name, i, step, previous, None, None, 0, True)
                    continue
                summary, failure, dropped = await _fold(
                    model, f"eval:{name}:{i}:{step}", case.user_id, previous, chunk, step - 1)
                previous = record(name, i, step, previous, summary, failure, dropped, False)

    try:
        await asyncio.gather(*(one(name, i) for name, i in units))
    finally:
        bar.close()


@dataclass(frozen=True, slots=True)
class JudgmentUnit:
    method: str
    case: int
    step: int
    probe: str
    triple: Triple
    preference: str


def judgment_units(cases: Sequence[Case], profile_methods: Sequence[str], run: RunDir, plan: Plan) -> list[JudgmentUnit]:
    """Every selection prompt of the run: baselines on the target, profiles on the target and early probes."""
    units: list[JudgmentUnit] = []
    with_persona = all(c.persona for c in cases)
    for i, case in enumerate(cases):
        probes = probes_of(case, plan)
        target = probes[:1]
        units += [JudgmentUnit("none", i, FULL, p, t, "") for p, t in target]
        raw = raw_history_preference(splits.used(case.history, case.task))
        units += [JudgmentUnit("raw-history", i, FULL, p, t, raw) for p, t in probes]
        if with_persona:
            units += [JudgmentUnit("persona", i, FULL, p, t, case.persona or "") for p, t in target]
        for name in profile_methods:
            for label, steps in ((full_label(name), [FULL]), (stream_label(name), range(1, plan.steps + 1))):
                for step in steps:
                    rec = run.records[profile_key(name, i, step)]
                    assert isinstance(rec, ProfileRecord)
                    units += [JudgmentUnit(label, i, step, p, t, rec.summary or "") for p, t in probes]
    return units


async def judge_all(run: RunDir, cases: Sequence[Case], units: Sequence[JudgmentUnit], judge: Judge,
                    plan: Plan) -> None:
    """Phase 2: every judgment not yet recorded."""
    todo = [u for u in units if judgment_key(u.method, u.case, u.step, u.probe) not in run.records]
    bar = tqdm(total=len(units), initial=len(units) - len(todo), desc="judgments", unit="answer",
               disable=_hide_bar(plan))
    gate = asyncio.Semaphore(plan.concurrency)

    async def one(u: JudgmentUnit) -> None:
        user = cases[u.case].user_id
        chosen_first = seeded_index(f"{plan.seed}:{user}", u.probe, 2) == 0
        prompt = SelectionPrompt.build(u.triple, u.preference, chosen_first=chosen_first)
        async with gate:
            reply = await judge.answer(prompt, request_id=f"judge:{u.method}:{u.case}:{u.step}:{u.probe}",
                                       seed=_seed(plan.seed, u.method, user, u.step, u.probe))
        if reply.error is not None:
            rec = JudgmentRecord(method=u.method, case=u.case, step=u.step, probe=u.probe, status="error",
                                 correct=False, answer=reply.error[:200])
        else:
            parsed = parse_answer(reply.text)
            rec = JudgmentRecord(method=u.method, case=u.case, step=u.step, probe=u.probe, status=parsed.status,
                                 correct=parsed.status == "ok" and parsed.choice == prompt.answer,
                                 choice=parsed.choice, answer=reply.text[:200])
        run.add(rec)
        bar.update(1)

    try:
        await asyncio.gather(*(one(u) for u in todo))
    finally:
        bar.close()
