"""What the two LLM backends (vllm, openai) share: prompt preparation and turning text into an outcome."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefstream.models import prompt as P
from prefstream.models.errors import FailureReason, OutputParseError, OverBudgetError
from prefstream.models.interface import UpdateFailure, UpdateRequest, UpdateSuccess, Usage
from prefstream.models.parse import parse_summary
from prefstream.models.tokens import PromptTokenizer, check_budget
from prefstream.errors import ConfigError
from prefstream.settings import ModelSettings


def tokenizer_path(m: ModelSettings) -> Path:
    """PREFSTREAM_TOKENIZER, else the model directory."""
    if m.tokenizer is not None:
        return m.tokenizer
    model = Path(m.model).expanduser()
    if model.is_dir():
        return model
    raise ConfigError(
        f"PREFSTREAM_TOKENIZER is not set and PREFSTREAM_MODEL={m.model!r} is not a directory: "
        "the prompt is rendered and counted locally and needs the model's tokenizer.json"
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    rendered: P.RenderedPrompt
    ids: list[int]


def prepare(tokenizer: PromptTokenizer, request: UpdateRequest, budget: int) -> Prepared | UpdateFailure:
    """Render and encode the prompt; an over-budget prompt is a (non-retryable) failure, never a cut."""
    rendered = P.render(request.previous_summary, request.evidence, max_summary_tokens=tokenizer.max_summary_tokens)
    ids = tokenizer.encode(rendered)
    try:
        check_budget(len(ids), budget)
    except OverBudgetError as exc:
        return failure(request, FailureReason.OVER_BUDGET, str(exc), retryable=False)
    return Prepared(rendered, ids)


def failure(request: UpdateRequest, reason: FailureReason, message: str, *, retryable: bool = True) -> UpdateFailure:
    return UpdateFailure(request_id=request.request_id, reason=reason.value, message=message, retryable=retryable)


def outcome(
    request: UpdateRequest,
    *,
    text: str,
    finish_reason: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    latency_s: float,
    model_id: str,
    max_summary_chars: int,
    tokenizer: PromptTokenizer | None = None,
) -> UpdateSuccess | UpdateFailure:
    """Parse a finished generation into a success, or a failure with its distinct reason.

    With a `tokenizer` whose `max_summary_tokens` is set, the summary is trimmed to that many tokens.
    """
    if finish_reason == "abort":
        return failure(request, FailureReason.ABORTED, "the engine aborted the request")
    max_tokens = tokenizer.max_summary_tokens if tokenizer is not None else None
    try:
        summary = parse_summary(
            text,
            finish_reason=finish_reason,
            max_chars=max_summary_chars,
            max_tokens=max_tokens,
            count_tokens=tokenizer.count_text_tokens if tokenizer is not None else None,
        )
    except OutputParseError as exc:
        return failure(request, exc.reason, str(exc))
    return UpdateSuccess(
        request_id=request.request_id,
        summary=summary,
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, latency_s=latency_s),
        model=model_id,
        prompt_version=P.prompt_version(max_tokens),
    )


def cache_salt(tenant: str | None) -> str | None:
    """vLLM's `cache_salt` for a tenant's requests: prefix-cache blocks are then keyed by it too, so a cached
    prompt prefix is never reused across tenants (`vllm/v1/core/kv_cache_utils.py` hashes it into the first
    block). None without a tenant: the cache behaves as before. The tenant pattern excludes the characters
    vLLM refuses in a salt (`@`, `/`, `\\`, NUL) and keeps it under vLLM's 128 characters."""
    return None if tenant is None else f"tenant:{tenant}"
