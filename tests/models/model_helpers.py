"""Helpers shared by the models tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from models.errors import FailureReason
from models.interface import UpdateRequest
from prefstream.settings import ModelSettings, load_section
from schemas.evidence import Evidence, Triple

# Small, explicit engine settings for CPU test runs.
ENGINE_ENV = {
    "PREFSTREAM_MODEL_BACKEND": "vllm",
    "PREFSTREAM_VLLM_MAX_MODEL_LEN": "4096",
    "PREFSTREAM_VLLM_MAX_NUM_SEQS": "32",
    "PREFSTREAM_VLLM_MAX_NUM_BATCHED_TOKENS": "4096",
    "PREFSTREAM_VLLM_DTYPE": "bfloat16",
    "PREFSTREAM_VLLM_LOAD_FORMAT": "dummy",
    "PREFSTREAM_VLLM_ENFORCE_EAGER": "true",
    "PREFSTREAM_MAX_TOKENS": "32",
    "PREFSTREAM_PROMPT_TOKEN_BUDGET": "3072",
    "PREFSTREAM_TIMEOUT_START_OVERHEAD_S": "60",
    "PREFSTREAM_TIMEOUT_INITIAL_TOKEN_LATENCY_S": "0.5",
}

# What random weights can produce: a parse failure, or the token limit (never a success).
PARSE_FAILURES = {FailureReason.NO_THINK_CLOSE, FailureReason.EMPTY_SUMMARY, FailureReason.TRUNCATED}

# The shape of a well-formed answer, small enough for a 1k-token vocabulary (test-only constraint).
ANSWER_REGEX = r"<think>\n[a-z ]{1,12}\n</think>\n\nThe user likes [a-z]{1,10}\."


def engine_settings(model_dir: Path, **env: str) -> ModelSettings:
    return load_section(ModelSettings, {**ENGINE_ENV, "PREFSTREAM_MODEL": str(model_dir), **env})


def request(i: int, *, summary: str | None = None, triples: int = 2, degraded: bool = False) -> UpdateRequest:
    ev = Evidence(
        event_id=f"e{i}",
        triples=tuple(
            Triple(query=f"Query {i}.{k}", chosen=f"Jazz album {k}", rejected="Stock news") for k in range(triples)
        ),
    )
    return UpdateRequest(
        request_id=f"r{i}",
        user_id=f"u{i}",
        epoch=0,
        base_version=0,
        previous_summary=summary,
        evidence=(ev,),
        degraded=degraded,
    )


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Await a condition of an in-process object (polled: the engine offers no event for it)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
