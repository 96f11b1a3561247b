"""The `vllm` backend: AlignXplore+ in an in-process vLLM `AsyncLLM` engine.

- `start()` builds the engine in a worker thread (it takes from seconds to minutes and blocks), so the
  event loop stays responsive; the worker calls it before joining its consumer group. The engine must
  then be used from this loop only (one engine = one event loop).
- The prompt is rendered and encoded here (`models.tokens`) and sent as token ids, so the engine sees
  exactly the counted prompt and user text can never be parsed into special tokens.
- Sampling defaults are the authors' (T 0.6, top_p 0.95, top_k 20, max_tokens 4096), always passed
  explicitly: `AsyncLLM.generate` ignores the model's generation_config and defaults to 16 tokens.
- Every call is time-boxed (`models.timebox`); cancelling the awaiting task, or the box expiring,
  aborts the request in the engine (vLLM's `generate()` aborts on cancellation).
- An `EngineDeadError` marks the backend dead: `check_health()` then raises `BackendDeadError` and the
  worker exits so it is restarted. Requests get `backend_unavailable` meanwhile.

vLLM and torch are imported only inside this module's functions.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from prefstream import logs
from prefstream.models import prompt as P
from prefstream.models.backends.common import Prepared, cache_salt, failure, outcome, prepare, tokenizer_path
from prefstream.models.errors import BackendDeadError, BackendUnavailableError, FailureReason
from prefstream.models.interface import UpdateFailure, UpdateRequest, UpdateSuccess
from prefstream.models.timebox import TimeBox
from prefstream.models.tokens import PromptTokenizer
from prefstream.settings import ModelSettings, Settings
from prefstream.schemas.evidence import Evidence

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

log = structlog.get_logger(__name__)


def engine_kwargs(m: ModelSettings) -> dict[str, Any]:
    """The engine's arguments, every throughput/memory setting explicit (AsyncLLM's defaults are small).

    Shared with the benchmark, which gives `vllm.LLM` exactly these.
    """
    return {
        "model": m.model,
        "tokenizer": str(m.tokenizer) if m.tokenizer is not None else None,
        "max_model_len": m.vllm_max_model_len,
        "max_num_seqs": m.vllm_max_num_seqs,
        "max_num_batched_tokens": m.vllm_max_num_batched_tokens,
        "gpu_memory_utilization": m.vllm_gpu_memory_utilization,
        "enable_prefix_caching": m.vllm_enable_prefix_caching,
        "dtype": m.vllm_dtype,
        "kv_cache_dtype": m.vllm_kv_cache_dtype,
        "load_format": m.vllm_load_format,
        "enforce_eager": m.vllm_enforce_eager,
        "tensor_parallel_size": m.vllm_tensor_parallel_size,
        "seed": m.vllm_seed,
        # Backfill updates carry a higher (later) priority than live ones (`UpdateRequest.priority`).
        "scheduling_policy": m.vllm_scheduling_policy,
        # Qwen3's reasoning markers: lets thinking_token_budget force `</think>` (the reasoning budget).
        "reasoning_parser": "qwen3",
        "disable_log_stats": True,
    }


def stream_window(m: ModelSettings) -> int:
    """How many updates the stream keeps in flight: the engine's batch, plus an optional queue that refills it.

    The engine admits a waiting request at its next step; without a queue a finished sequence's slot stays
    empty until the stream has read the user's state, counted and encoded the prompt and submitted it, on
    an event loop that is also applying results (measured on a busy 2-core CPU: a median 139-259 ms per
    slot, bench/e2e_vs_engine.py). Off by default: its throughput gain was within that machine's noise.
    """
    return m.vllm_max_num_seqs + math.ceil(m.vllm_max_num_seqs * m.vllm_queued_fraction)


def engine_args(m: ModelSettings, **overrides: Any) -> Any:
    from vllm.engine.arg_utils import AsyncEngineArgs

    return AsyncEngineArgs(**{**engine_kwargs(m), "enable_log_requests": False, **overrides})


def sampling_params(m: ModelSettings, *, degraded: bool, **overrides: Any) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    budget = m.reasoning_budget
    if degraded and m.degraded_reasoning_budget is not None:
        budget = m.degraded_reasoning_budget if budget is None else min(budget, m.degraded_reasoning_budget)
    kwargs: dict[str, Any] = {
        "temperature": m.temperature,
        "top_p": m.top_p,
        "top_k": m.top_k,
        "max_tokens": m.max_tokens,
        "output_kind": RequestOutputKind.FINAL_ONLY,  # one output per request: we only need the end
        # No incremental detokenization in the engine's output loop (it competes with scheduling for the
        # CPU at every step): the backend decodes the finished token ids once. No stop strings are used.
        "detokenize": False,
        "skip_special_tokens": True,  # <think>/</think> are not special in Qwen3: they stay in the text
    }
    if budget is not None:
        kwargs["thinking_token_budget"] = budget
    kwargs.update(overrides)
    return SamplingParams(**kwargs)


# Root causes a person can fix by a setting, and which one (matched in the cause's text).
_HINTS = (
    ("cannot find any model weights", "no weights in the model directory; a tiny test model from "
     "`python -m prefstream.models.tiny` has none: set PREFSTREAM_VLLM_LOAD_FORMAT=dummy"),
    ("no such file or directory", "check PREFSTREAM_MODEL (the model directory)"),
    ("does not appear to have a file named config.json", "check PREFSTREAM_MODEL (the model directory)"),
    ("kv cache", "the KV cache does not fit: on CPU set VLLM_CPU_KVCACHE_SPACE (GiB), on a GPU "
     "PREFSTREAM_VLLM_GPU_MEMORY_UTILIZATION, or lower PREFSTREAM_VLLM_MAX_MODEL_LEN"),
    ("max_model_len", "lower PREFSTREAM_VLLM_MAX_MODEL_LEN to what the model supports"),
)


def start_failure(exc: BaseException, cause_path: str) -> str:
    """One line for an engine that failed to start: the root cause the engine process logged (vLLM's own
    exception only says `Engine core initialization failed. See root cause above.`) and what to set."""
    try:
        with open(cause_path, encoding="utf-8") as f:
            root = f.read().strip()
    except OSError:
        root = ""
    if not root:
        root = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    hint = next((h for needle, h in _HINTS if needle in root.lower()), None)
    return f"{root}" + (f" ({hint})" if hint else "")


class VllmBackend:
    """AlignXplore+ on an in-process AsyncLLM."""

    name = "vllm"

    def __init__(self, settings: ModelSettings, *, engine_overrides: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.model_id = settings.effective_model_id
        self.prompt_version = P.prompt_version(settings.max_summary_tokens)
        self.max_concurrency = stream_window(settings)
        self.prompt_token_budget = settings.prompt_token_budget
        self.tokenizer = PromptTokenizer(tokenizer_path(settings), max_summary_tokens=settings.max_summary_tokens)
        self.timebox = TimeBox.from_settings(settings)
        # Test hook: extra SamplingParams fields (e.g. structured_outputs) and generate() kwargs.
        self.sampling_overrides: dict[str, Any] = {}
        self.generate_overrides: dict[str, Any] = {}
        self._engine_overrides = engine_overrides or {}
        self._engine: AsyncLLM | None = None
        self._dead: BaseException | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> VllmBackend:
        return cls(settings.model)

    @property
    def engine(self) -> AsyncLLM:
        if self._engine is None:
            raise BackendUnavailableError("the vllm backend is not started")
        return self._engine

    async def start(self) -> None:
        """Build the engine off the event loop. Idempotent."""
        if self._engine is not None:
            return
        if self._closed:
            raise BackendUnavailableError("the vllm backend is closed")
        # vLLM's lines join the worker's JSON log, and the engine process's root cause is kept (see below).
        logs_dir = tempfile.mkdtemp(prefix="prefstream-vllm-")
        cause = os.path.join(logs_dir, "root-cause")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            with logs.route_vllm_logs(logs_dir, cause):
                try:
                    from vllm.usage.usage_lib import UsageContext
                    from vllm.v1.engine.async_llm import AsyncLLM
                except ImportError as exc:
                    raise BackendUnavailableError(f"vllm is not installed: {exc}") from exc
                args = engine_args(self.settings, **self._engine_overrides)
                try:
                    self._engine = await loop.run_in_executor(
                        None, lambda: AsyncLLM.from_engine_args(args, usage_context=UsageContext.ENGINE_CONTEXT)
                    )
                except Exception as exc:
                    failure = f"the vLLM engine failed to start: {start_failure(exc, cause)}"
                    raise BackendUnavailableError(failure) from exc
        finally:
            shutil.rmtree(logs_dir, ignore_errors=True)
        log.info("vllm engine started", model=self.model_id, seconds=round(time.perf_counter() - started, 1))

    def count_prompt_tokens(self, previous_summary: str | None, evidence: tuple[Evidence, ...]) -> int:
        return self.tokenizer.count_prompt_tokens(previous_summary, evidence)

    async def update(self, request: UpdateRequest) -> UpdateSuccess | UpdateFailure:
        from vllm.inputs import tokens_input
        from vllm.v1.engine.exceptions import EngineDeadError

        prepared = prepare(self.tokenizer, request, self.prompt_token_budget)
        if not isinstance(prepared, Prepared):
            return prepared
        if self._dead is not None or self._engine is None:
            return failure(request, FailureReason.BACKEND_UNAVAILABLE, "the vLLM engine is not running")
        params = sampling_params(self.settings, degraded=request.degraded, **self.sampling_overrides)
        # The stream may retry a request id while the first attempt is still being aborted: keep ids unique.
        engine_rid = f"{request.request_id}:{uuid.uuid4().hex[:8]}"
        timeout = self.timebox.timeout_for(params.max_tokens)
        started = time.perf_counter()
        final = None
        try:
            async with asyncio.timeout(timeout):
                # Cancellation (ours or the time box's) inside generate() aborts the request in the engine.
                async for out in self._engine.generate(
                    tokens_input(prepared.ids, cache_salt=cache_salt(request.tenant)), params, engine_rid,
                    priority=request.priority if self.settings.vllm_scheduling_policy == "priority" else 0,
                    **self.generate_overrides,
                ):
                    final = out
        except TimeoutError:
            log.warning("model call timed out", request_id=request.request_id, timeout_s=round(timeout, 1))
            return failure(request, FailureReason.TIMEOUT, f"no result within the {timeout:.1f} s time box")
        except EngineDeadError as exc:
            self._dead = exc
            log.error("vllm engine died", request_id=request.request_id)
            return failure(request, FailureReason.BACKEND_UNAVAILABLE, "the vLLM engine died")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # validation errors, EngineGenerateError: this request only
            log.warning("model call failed", request_id=request.request_id, error=type(exc).__name__)
            return failure(request, FailureReason.ENGINE_ERROR, f"{type(exc).__name__}: {exc}")
        latency = time.perf_counter() - started
        if final is None or not final.outputs:
            return failure(request, FailureReason.ENGINE_ERROR, "the engine returned no output")
        completion = final.outputs[0]
        text = self.tokenizer.decode(list(completion.token_ids), skip_special_tokens=True)  # detokenize=False
        result = outcome(
            request,
            text=text,
            finish_reason=completion.finish_reason,
            prompt_tokens=len(prepared.ids),
            completion_tokens=len(completion.token_ids),
            latency_s=latency,
            model_id=self.model_id,
            max_summary_chars=self.settings.max_summary_chars,
            tokenizer=self.tokenizer,
        )
        if completion.finish_reason in ("stop", "length"):
            self.timebox.observe(latency, len(completion.token_ids))
        return result

    def check_health(self) -> None:
        if self._dead is not None:
            raise BackendDeadError("the vLLM engine died") from self._dead
        if self._engine is not None and self._engine.errored:
            raise BackendDeadError("the vLLM engine is no longer running")
        if self._closed:
            raise BackendDeadError("the vllm backend is closed")

    async def aclose(self) -> None:
        """Shut the engine down (off the loop; ~5 s on CPU). Idempotent."""
        self._closed = True
        engine, self._engine = self._engine, None
        if engine is None:
            return
        loop = asyncio.get_running_loop()
        timeout = self.settings.vllm_shutdown_timeout_s
        try:
            await asyncio.wait_for(loop.run_in_executor(None, engine.shutdown), timeout=timeout + 5)
        except TimeoutError:
            log.error("vllm engine shutdown timed out", timeout_s=timeout)
        del engine  # drop it while the interpreter is alive (its __del__ at exit prints a TypeError)
