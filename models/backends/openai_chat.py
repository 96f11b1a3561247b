"""The `openai` chat backend: a downstream model behind any OpenAI-compatible `/v1/chat/completions`.

The server applies the model's chat template. `enable_thinking` goes in `chat_template_kwargs` (vLLM's
extension; servers that do not know it ignore it) and `top_k` as a top-level field (vLLM and SGLang read
it). Bounded concurrency; transport errors, 429 and 5xx are retried with backoff, and when the retries
run out the server counts as down: `BackendUnavailableError` (the caller's run stops, and can be
resumed). Any other failure (a 4xx such as a prompt over the context) is a reply with `error` set: it
belongs to that request alone.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from prefstream.models.chat import ChatReply, ChatRequest
from prefstream.models.errors import BackendUnavailableError

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class OpenAIChat:
    """Chat completions from an OpenAI-compatible server."""

    name = "openai"

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None, concurrency: int = 16,
                 timeout_s: float = 120.0, retries: int = 3, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.model_id = model
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._retries = retries
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the pool and check that the server serves the model."""
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self._timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=self._concurrency), transport=self._transport,
        )
        try:
            resp = await self._client.get("models")
            resp.raise_for_status()
            served = [m["id"] for m in resp.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailableError(f"cannot list models at {self.base_url}: {type(exc).__name__}") from None
        if self.model_id not in served:
            raise BackendUnavailableError(f"{self.base_url} does not serve {self.model_id!r} (it serves {served})")

    def body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [m.to_dict() for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "n": 1,
            "chat_template_kwargs": {"enable_thinking": request.thinking},
        }
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    async def generate(self, request: ChatRequest) -> ChatReply:
        if self._client is None:
            return ChatReply(request_id=request.request_id, error="backend_unavailable")
        body = self.body(request)
        error = "no attempt"
        async with self._slots:
            for attempt in range(self._retries + 1):
                try:
                    resp = await self._client.post("chat/completions", json=body)
                except httpx.TransportError as exc:
                    error = f"transport: {type(exc).__name__}"
                else:
                    if resp.status_code < 400:
                        return _reply(request, resp)
                    error = f"server answered {resp.status_code}"
                    if resp.status_code not in _RETRY_STATUS:
                        return ChatReply(request_id=request.request_id, error=error)
                if attempt < self._retries:
                    await asyncio.sleep(0.5 * 2**attempt * (0.5 + random.random()))
        raise BackendUnavailableError(f"{self.base_url}: {error} after {self._retries + 1} attempts")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _reply(request: ChatRequest, resp: httpx.Response) -> ChatReply:
    try:
        data = resp.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return ChatReply(
            request_id=request.request_id,
            text=str(choice["message"].get("content") or ""),
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ChatReply(request_id=request.request_id, error="malformed chat completion response")
