"""The runner's failure policy: a failed update is a result; a backend that is down stops the run, resumably."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefstream.eval.checkpoint import ProfileRecord, RunDir, profile_key
from prefstream.eval.cli import evaluate
from prefstream.eval.judges import LexicalJudge
from prefstream.eval.runner import Plan, build_profiles
from prefstream.eval.synthetic import generate, write
from prefstream.eval.data import load_benchmark
from prefstream.models.errors import BackendUnavailableError
from prefstream.models.interface import UpdateFailure, UpdateRequest, UpdateSuccess, Usage
from prefstream.schemas.evidence import Evidence


class ScriptedModel:
    """A test double of a preference model: fails the updates whose request id contains `fail_on`, with `reason`."""

    name = "scripted"
    model_id = "scripted"
    prompt_version = "scripted-1"
    max_concurrency = 4
    prompt_token_budget = 10

    def __init__(self, fail_on: str = "", reason: str = "no_think_close") -> None:
        self.fail_on, self.reason = fail_on, reason
        self.calls: list[str] = []
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1

    def count_prompt_tokens(self, previous_summary: str | None, evidence: tuple[Evidence, ...]) -> int:
        return sum(len(ev.triples) for ev in evidence)  # one token per triple: budget 10 holds 10 triples

    async def update(self, request: UpdateRequest) -> UpdateSuccess | UpdateFailure:
        self.calls.append(request.request_id)
        if self.fail_on and self.fail_on in request.request_id:
            return UpdateFailure(request_id=request.request_id, reason=self.reason, message="scripted")
        n = sum(len(ev.triples) for ev in request.evidence)
        return UpdateSuccess(request_id=request.request_id, summary=f"{request.previous_summary or ''}+{n}",
                             usage=Usage(prompt_tokens=0, completion_tokens=0, latency_s=0), model="s",
                             prompt_version="s")

    def check_health(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture(name="cases")
def _cases(tmp_path: Path) -> list:
    (path,) = write(generate(users=3, events=24, noise=0, drift=0, seed=0, domain="music"), tmp_path / "m.jsonl",
                    "benchmark")
    return load_benchmark(path)


async def test_failed_update_keeps_the_previous_summary(tmp_path: Path, cases: list) -> None:
    """As in the stream, a failed step records the failure and carries the previous summary on."""
    run = RunDir(tmp_path / "run")
    run.open(b"{}", restart=False)
    model = ScriptedModel(fail_on=":2")  # step 2 of every user (and nothing else: 3 users, ids :0: :1: :2:)
    await build_profiles(run, cases[:2], {"s": model}, Plan(steps=3, progress=False), len)
    rec1, rec2, rec3 = (run.records[profile_key("s", 0, step)] for step in (1, 2, 3))
    assert isinstance(rec2, ProfileRecord) and rec2.status == "failed" and rec2.failure == "no_think_close"
    assert rec2.summary == rec1.summary  # type: ignore[union-attr]
    assert rec3.summary == f"{rec1.summary}+8"  # type: ignore[union-attr]


async def test_over_budget_prompts_drop_their_oldest_half(tmp_path: Path, cases: list) -> None:
    """The full-history update of 24 triples under a 10-triple budget keeps the newest 6 (24 -> 12 -> 6)."""
    run = RunDir(tmp_path / "run")
    run.open(b"{}", restart=False)
    await build_profiles(run, cases[:1], {"s": ScriptedModel()}, Plan(steps=2, progress=False), len)
    full = run.records[profile_key("s", 0, 0)]
    assert isinstance(full, ProfileRecord) and full.dropped == 18 and full.summary == "+6"


async def test_a_backend_that_is_down_stops_the_run_and_a_rerun_finishes(tmp_path: Path, cases: list) -> None:
    """`backend_unavailable` raises instead of being recorded; the same run then completes with a healthy backend."""
    down = ScriptedModel(fail_on="eval:", reason="backend_unavailable")
    info = {"input": "x", "steps": 2}
    with pytest.raises(BackendUnavailableError, match="scripted preference backend is unavailable"):
        await evaluate(cases, {"scripted": down}, LexicalJudge, Plan(steps=2, progress=False), tmp_path / "run", info,
                       count_tokens=len)
    run = RunDir(tmp_path / "run")
    run.open(b'{"input":"x","steps":2}', restart=False)
    assert not [k for k in run.records if k[1] == "scripted"]
    run.close()
    results = await evaluate(cases, {"scripted": ScriptedModel()}, LexicalJudge, Plan(steps=2, progress=False),
                             tmp_path / "run", info, count_tokens=len)
    assert {m.method: m.n for m in results.methods}["scripted/stream"] == 3


async def test_a_finished_run_starts_no_model(tmp_path: Path, cases: list) -> None:
    """Re-running a finished run (even one whose judge shares the preference engine) starts nothing."""
    info = {"input": "x", "steps": 2}
    first, again = ScriptedModel(), ScriptedModel()
    for model in (first, again):
        await evaluate(cases, {"scripted": model}, LexicalJudge, Plan(steps=2, progress=False), tmp_path / "run",
                       info, count_tokens=len, keep_engine_for_judge=True)
    assert first.starts == 1 and again.starts == 0 and again.calls == []
