"""Generate text for chat messages: the narrow interface of a *downstream* model (the eval's judge).

The preference model folds evidence into a summary (`models.interface.PreferenceModel`); a downstream
model reads that summary and acts on it. Evaluating a profile needs the second kind too, chosen
independently of the first: `ChatModel` is all it needs, a chat in and text out. Two backends, beside
the preference backends and built the same way: `models.backends.vllm_chat` (in-process vLLM, which can
share a started preference engine) and `models.backends.openai_chat` (`/v1/chat/completions` of any
OpenAI-compatible server).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from prefstream.models.prompt import ChatMessage


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One chat completion. `thinking` is passed to the chat template as `enable_thinking`."""

    request_id: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    seed: int | None = None
    thinking: bool = False


class ChatReply(msgspec.Struct, frozen=True, kw_only=True):
    """The generated text, or `error` (a short reason, never the prompt) when there is none."""

    request_id: str
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@runtime_checkable
class ChatModel(Protocol):
    """A downstream model: chat messages in, text out."""

    name: str  # vllm, openai
    model_id: str

    async def start(self) -> None:
        """Bring the model up (build or attach to the engine, open the pool)."""

    async def generate(self, request: ChatRequest) -> ChatReply:
        """One completion. A per-request failure is a reply with `error`; a dead or unreachable model raises
        `BackendDeadError` / `BackendUnavailableError` (an evaluation then stops, to be resumed)."""

    async def aclose(self) -> None:
        """Release what `start()` took. Idempotent."""
