"""The `openai` backend: AlignXplore+ served by a separate `vllm serve` fleet.

The prompt is rendered and encoded here, exactly as the `vllm` backend does, and sent as token ids to
`/v1/completions` (not `/v1/chat/completions`): the server applies no chat template and no reasoning
parser, so the model gets the same tokens as in-process and the raw text comes back to the same parser.
PREFSTREAM_TOKENIZER must therefore be the served model's tokenizer.

- Bounded concurrency: at most PREFSTREAM_OPENAI_CONCURRENCY requests in flight from this worker.
- Every call is time-boxed like the `vllm` backend's (`models.timebox`). The completion is streamed
  (SSE) and reassembled, so leaving the box or being cancelled closes the connection and the server
  aborts the request (a cancelled non-streaming call can leave the server generating to the end).
- Transport errors, 429 and 5xx answers are retried with exponential backoff and jitter (within the
  box); other 4xx answers fail at once with `engine_error`.
- `check_health()` fails only once the client is closed: a server that is down is reported per request
  (`backend_unavailable`, retryable), since restarting the worker would not bring it back.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import httpx
import structlog

from prefstream.models import prompt as P
from prefstream.models.backends.common import Prepared, cache_salt, failure, outcome, prepare, tokenizer_path
from prefstream.models.errors import BackendDeadError, BackendUnavailableError, FailureReason
from prefstream.models.interface import UpdateFailure, UpdateRequest, UpdateSuccess
from prefstream.models.timebox import TimeBox
from prefstream.models.tokens import PromptTokenizer
from prefstream.settings import ModelSettings, Settings
from prefstream.schemas.evidence import Evidence

log = structlog.get_logger(__name__)

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class OpenAIBackend:
    """AlignXplore+ behind `vllm serve`, through `/v1/completions` with pre-tokenized prompts."""

    name = "openai"

    def __init__(self, settings: ModelSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.model_id = settings.effective_model_id
        self.prompt_version = P.prompt_version(settings.max_summary_tokens)
        self.max_concurrency = settings.openai_concurrency
        self.prompt_token_budget = settings.prompt_token_budget
        self.tokenizer = PromptTokenizer(tokenizer_path(settings), max_summary_tokens=settings.max_summary_tokens)
        self.timebox = TimeBox.from_settings(settings)
        # Test hook: extra request-body fields (e.g. structured_outputs, ignore_eos).
        self.body_overrides: dict[str, Any] = {}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(settings.openai_concurrency)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIBackend:
        return cls(settings.model)

    async def start(self) -> None:
        """Open the connection pool and check that the server serves PREFSTREAM_MODEL. Idempotent."""
        if self._client is not None:
            return
        if self._closed:
            raise BackendUnavailableError("the openai backend is closed")
        s = self.settings
        headers = {"Authorization": f"Bearer {s.openai_api_key}"} if s.openai_api_key else {}
        self._client = httpx.AsyncClient(
            base_url=s.openai_base_url.rstrip("/") + "/",
            headers=headers,
            # The per-call time box bounds reads; only connecting gets its own, short timeout.
            timeout=httpx.Timeout(None, connect=s.openai_connect_timeout_s),
            limits=httpx.Limits(max_connections=s.openai_concurrency, max_keepalive_connections=s.openai_concurrency),
            transport=self._transport,
        )
        served = await self._served_models()
        if s.model not in served:
            raise BackendUnavailableError(f"{s.openai_base_url} does not serve {s.model!r} (it serves {served})")

    async def _served_models(self) -> list[str]:
        assert self._client is not None
        last: Exception | None = None
        for attempt in range(self.settings.openai_retries + 1):
            try:
                resp = await self._client.get("models")
                resp.raise_for_status()
                return [m["id"] for m in resp.json().get("data", [])]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last = exc
                await asyncio.sleep(self._backoff(attempt))
        raise BackendUnavailableError(f"cannot list models at {self.settings.openai_base_url}: {last}")

    def _backoff(self, attempt: int) -> float:
        base: float = self.settings.openai_backoff_s * (2**attempt)
        return base * (0.5 + random.random())  # jitter: retries from many workers do not line up

    def count_prompt_tokens(self, previous_summary: str | None, evidence: tuple[Evidence, ...]) -> int:
        return self.tokenizer.count_prompt_tokens(previous_summary, evidence)

    def _body(self, ids: list[int], degraded: bool) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "model": s.model,
            "prompt": ids,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "n": 1,
            "skip_special_tokens": True,
        }
        budget = s.reasoning_budget
        if degraded and s.degraded_reasoning_budget is not None:
            budget = s.degraded_reasoning_budget if budget is None else min(budget, s.degraded_reasoning_budget)
        if budget is not None:
            body["thinking_token_budget"] = budget
        body.update(self.body_overrides)
        return body

    async def update(self, request: UpdateRequest) -> UpdateSuccess | UpdateFailure:
        prepared = prepare(self.tokenizer, request, self.prompt_token_budget)
        if not isinstance(prepared, Prepared):
            return prepared
        if self._client is None:
            return failure(request, FailureReason.BACKEND_UNAVAILABLE, "the openai backend is not started")
        body = self._body(prepared.ids, request.degraded)
        salt = cache_salt(request.tenant)
        if salt is not None:
            body["cache_salt"] = salt  # vllm serve: no prefix-cache sharing across tenants
        if request.priority:
            body["priority"] = request.priority  # a backfill: needs `vllm serve --scheduling-policy priority`
        timeout = self.timebox.timeout_for(int(body["max_tokens"]))
        started = time.perf_counter()
        try:
            async with self._slots, asyncio.timeout(timeout):
                data = await self._post_with_retries(body)
        except TimeoutError:
            log.warning("model call timed out", request_id=request.request_id, timeout_s=round(timeout, 1))
            return failure(request, FailureReason.TIMEOUT, f"no result within the {timeout:.1f} s time box")
        except _Retryable as exc:
            return failure(request, exc.reason, str(exc))
        except httpx.HTTPStatusError as exc:
            return failure(request, FailureReason.ENGINE_ERROR, _describe(exc.response), retryable=False)
        except (httpx.HTTPError, ValueError) as exc:  # a broken stream or an unreadable chunk
            return failure(request, FailureReason.ENGINE_ERROR, f"bad response: {type(exc).__name__}")
        latency = time.perf_counter() - started
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            text, finish = str(choice["text"]), choice.get("finish_reason")
            completion_tokens = int(usage.get("completion_tokens", 0))
        except (KeyError, IndexError, TypeError, ValueError):
            return failure(request, FailureReason.ENGINE_ERROR, "malformed completion response")
        result = outcome(
            request,
            text=text,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens", len(prepared.ids))),
            completion_tokens=completion_tokens,
            latency_s=latency,
            model_id=self.model_id,
            max_summary_chars=self.settings.max_summary_chars,
            tokenizer=self.tokenizer,
        )
        if finish in ("stop", "length"):
            self.timebox.observe(latency, completion_tokens)
        return result

    async def _post_with_retries(self, body: dict[str, Any]) -> dict[str, Any]:
        retries = self.settings.openai_retries
        for attempt in range(retries + 1):
            try:
                return await self._post_streaming(body)
            except httpx.TransportError as exc:
                error = _Retryable(FailureReason.BACKEND_UNAVAILABLE, f"{type(exc).__name__}: {exc}")
            except _Retryable as exc:
                error = exc
            if attempt == retries:
                raise error
            await asyncio.sleep(self._backoff(attempt))
        raise AssertionError("unreachable")

    async def _post_streaming(self, body: dict[str, Any]) -> dict[str, Any]:
        """One attempt, streamed (SSE), reassembled into a completion: {choices: [{text, finish_reason}], usage}.

        Streaming is what makes an abort certain: leaving this function early (time box, cancellation)
        closes the response with its body unread, which closes the connection, and the server aborts a
        request whose stream has lost its reader. (A cancelled non-streaming request may leave its
        connection open, and the server then generates to the end.)
        """
        assert self._client is not None
        stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        async with self._client.stream("POST", "completions", json=stream_body) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                if resp.status_code in _RETRY_STATUS:
                    raise _Retryable(FailureReason.ENGINE_ERROR, _describe(resp))
                resp.raise_for_status()
            parts: list[str] = []
            finish: str | None = None
            usage: dict[str, Any] = {}
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                if chunk.get("error"):
                    raise _Retryable(FailureReason.ENGINE_ERROR, "server error in stream")
                for choice in chunk.get("choices") or ():
                    parts.append(choice.get("text") or "")
                    finish = choice.get("finish_reason") or finish
                usage = chunk.get("usage") or usage
        return {"choices": [{"text": "".join(parts), "finish_reason": finish}], "usage": usage}

    def check_health(self) -> None:
        if self._closed:
            raise BackendDeadError("the openai backend is closed")

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _describe(resp: httpx.Response) -> str:
    # The server's error message may quote the prompt; keep only its status and type.
    try:
        err = resp.json().get("error", {})
        kind = err.get("type", "") if isinstance(err, dict) else ""
    except ValueError:
        kind = ""
    return f"server answered {resp.status_code} {kind}".strip()
