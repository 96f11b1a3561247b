"""Errors of the preference-model package.

    PrefstreamError
    └── ModelError                 anything models/ raises on purpose
        ├── BackendDeadError       the backend can no longer serve: the worker must exit and be restarted
        ├── BackendUnavailableError the backend could not be started (missing package, files, server)
        ├── PromptError            a prompt could not be built (over budget, tokenizer unsuitable)
        └── OutputParseError       a generation is not a well-formed summary (carries a FailureReason)

Per-request failures are not raised across the interface: `update()` returns an `UpdateFailure` whose
`reason` is one of the stable `FailureReason` codes below. Only `check_health()` raises, with
`BackendDeadError`, and `start()` with `BackendUnavailableError`.
"""

from __future__ import annotations

import enum

from prefstream.errors import PrefstreamError


class FailureReason(enum.StrEnum):
    """Stable codes for failed updates (they go to the failures topic and to metrics: never rename)."""

    NO_THINK_CLOSE = "no_think_close"  # the generation has no `</think>`: reasoning never finished
    EMPTY_SUMMARY = "empty_summary"  # nothing after the last `</think>`
    TRUNCATED = "truncated"  # the generation hit max_tokens
    SUMMARY_TOO_LONG = "summary_too_long"  # summary longer than PREFSTREAM_MAX_SUMMARY_CHARS
    TIMEOUT = "timeout"  # the call ran past its time box and was aborted
    OVER_BUDGET = "over_budget"  # the prompt exceeds PREFSTREAM_PROMPT_TOKEN_BUDGET (the stream must split)
    ENGINE_ERROR = "engine_error"  # the engine or server rejected or failed the request
    BACKEND_UNAVAILABLE = "backend_unavailable"  # the engine is dead or the server unreachable
    ABORTED = "aborted"  # the engine aborted the request (shutdown, admin abort)


#: What each reason means, for operators (docs/schemas.md's table of failure reasons is generated from it).
FAILURE_REASON_DOCS: dict[FailureReason, str] = {
    FailureReason.NO_THINK_CLOSE: "The generation has no `</think>`: the model's reasoning never finished.",
    FailureReason.EMPTY_SUMMARY: "Nothing follows the last `</think>`: no summary was written.",
    FailureReason.TRUNCATED: "The generation hit PREFSTREAM_MAX_TOKENS before it ended.",
    FailureReason.SUMMARY_TOO_LONG: "The summary is longer than PREFSTREAM_MAX_SUMMARY_CHARS.",
    FailureReason.TIMEOUT: "The call ran past its time box and was aborted.",
    FailureReason.OVER_BUDGET: "The prompt exceeds PREFSTREAM_PROMPT_TOKEN_BUDGET (the batch is split and retried).",
    FailureReason.ENGINE_ERROR: "The engine or server rejected or failed the request.",
    FailureReason.BACKEND_UNAVAILABLE: "The engine is dead or the server unreachable.",
    FailureReason.ABORTED: "The engine aborted the request (shutdown, admin abort).",
}

# Failures worth retrying as they are; the others need a different request (split, degrade) or none.
RETRYABLE: frozenset[FailureReason] = frozenset(
    {
        FailureReason.NO_THINK_CLOSE,  # sampling is random: another draw may close the reasoning
        FailureReason.EMPTY_SUMMARY,
        FailureReason.TRUNCATED,
        FailureReason.SUMMARY_TOO_LONG,
        FailureReason.TIMEOUT,
        FailureReason.ENGINE_ERROR,
        FailureReason.BACKEND_UNAVAILABLE,
        FailureReason.ABORTED,
    }
)


class ModelError(PrefstreamError):
    """Root of the errors raised by models/."""


class BackendDeadError(ModelError):
    """The backend can no longer serve (engine process died, pool closed). The worker exits."""


class BackendUnavailableError(ModelError):
    """The backend could not be started: a package, a file or a server is missing."""


class PromptError(ModelError):
    """The prompt for an update could not be built."""


class OverBudgetError(PromptError):
    """The rendered prompt is larger than the prompt token budget."""

    def __init__(self, tokens: int, budget: int) -> None:
        super().__init__(f"prompt takes {tokens} tokens, budget is {budget}: split the batch")
        self.tokens = tokens
        self.budget = budget


class OutputParseError(ModelError):
    """A generation is not a well-formed summary."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
