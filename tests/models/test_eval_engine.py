"""`prefstream eval` with the real tiny vLLM engine as preference model and as judge (one shared engine)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from prefstream.eval.cli import _judge, evaluate
from prefstream.eval.data import load_benchmark
from prefstream.eval.runner import Plan
from prefstream.eval.synthetic import generate, write
from prefstream.models.backends.extractive import ExtractiveBackend
from prefstream.models.backends.vllm_engine import VllmBackend
from prefstream.settings import Settings

from model_helpers import ANSWER_REGEX

pytestmark = [pytest.mark.engine, pytest.mark.asyncio(loop_scope="session")]


async def test_eval_runs_end_to_end_on_the_tiny_engine(vllm_backend: VllmBackend, tmp_path: Path) -> None:
    """Profiles come from the engine through the stream's update path; its judge answers are parsed and counted."""
    from vllm.sampling_params import StructuredOutputsParams

    (data,) = write(generate(users=4, events=6, noise=0.0, drift=0.0, seed=1), tmp_path / "s.jsonl", "benchmark")
    cases = load_benchmark(data)
    settings = Settings.from_env({"PREFSTREAM_MODEL_BACKEND": "vllm", "PREFSTREAM_MODEL": vllm_backend.settings.model})
    models = {"extractive": ExtractiveBackend.from_settings(settings), "vllm": vllm_backend}
    args = argparse.Namespace(judge="vllm", judge_model=None, judge_max_tokens=16, judge_temperature=0.6)
    factory, desc, shares = _judge(args, dataclasses.replace(settings, model=vllm_backend.settings), vllm_backend)
    assert shares and desc.endswith("(shared engine)")
    # Random weights cannot write a summary; the test-only constraint gives the update the authors' shape.
    vllm_backend.sampling_overrides = {"structured_outputs": StructuredOutputsParams(regex=ANSWER_REGEX),
                                       "max_tokens": 64}
    vllm_backend.generate_overrides = {"reasoning_ended": True}
    try:
        results = await evaluate(cases, models, factory, Plan(steps=2, probes=1, progress=False), tmp_path / "run",
                                 {"input": str(data), "steps": 2}, count_tokens=vllm_backend.tokenizer.count_text_tokens,
                                 keep_engine_for_judge=True, close_models=False)
    finally:
        vllm_backend.sampling_overrides, vllm_backend.generate_overrides = {}, {}
    methods = {m.method: m for m in results.methods}
    assert set(methods) == {"none", "raw-history", "persona", "extractive/full", "extractive/stream", "vllm/full",
                            "vllm/stream"}
    for name in ("vllm/full", "vllm/stream"):
        assert methods[name].update_failures == 0 and methods[name].mean_summary_tokens
    for m in methods.values():  # every answer of the tiny judge is counted under one status
        assert m.n == 4 and sum(m.answers.values()) == 4
    answers = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()
               if '"kind":"judgment"' in line]
    statuses = {a["status"] for a in answers}
    assert statuses <= {"ok", "malformed", "both", "neither"} and "malformed" in statuses, statuses
    summaries = [json.loads(line)["summary"] for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()
                 if '"method":"vllm"' in line]
    assert summaries and all(s.startswith("The user likes ") for s in summaries)
    vllm_backend.check_health()
