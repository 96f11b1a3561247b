"""The `ledger` test backend: a summary that is the list of event ids folded into it.

It makes the stream's guarantees checkable from the outside. A profile's summary is one event id per
line, in the order the updates folded them, so a test can assert that every accepted event reached
the profile exactly once and in order. It never looks at the evidence text. Optional knobs slow it
down (to keep updates in flight while a rebalance or a forget happens) or make it fail (to exercise
retries, degradation, parking and redrive).

Which updates fail is deterministic: every `fail_every`th call, the first `fail_times` updates of users
whose id starts with `fail_user_prefix`, every update of users whose id starts with `fail_always_prefix`;
a selected user's updates fail only from profile version `fail_from_version` on (1: the first update
succeeds, so the failures have an old summary to keep). How one fails is `fail_mode`:

| mode               | what update() does                                                          | reason       |
| ------------------ | --------------------------------------------------------------------------- | ------------ |
| `failure`          | returns an `UpdateFailure`                                                  | engine_error |
| `raise`            | raises (the interface says it never does; the fold scheduler copes)         | engine_error |
| `hang`             | never returns (only the scheduler's time box ends it, by cancelling)        | timeout      |
| `no_think_close`   | generates reasoning with no `</think>`                                      | (the parser) |
| `empty_summary`    | generates `<think>...</think>` and nothing after it                         | (the parser) |
| `summary_too_long` | generates a summary one character longer than `max_summary_chars`           | (the parser) |
| `truncated`        | generates text that stops at the token limit (`finish_reason="length"`)     | (the parser) |

The four malformed generations go through `models.backends.common.outcome`, the same code that turns
the vllm and openai backends' raw text into an outcome, so the reason code is the real parser's.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Final

from prefstream.models.backends.common import outcome
from prefstream.models.errors import BackendDeadError, FailureReason
from prefstream.models.interface import UpdateFailure, UpdateRequest, UpdateSuccess, Usage
from prefstream.schemas.evidence import Evidence

if TYPE_CHECKING:
    from prefstream.settings import Settings

__all__ = ["FAIL_MODES", "LedgerBackend", "LedgerFault", "malformed_generation", "parse_ledger"]

PROMPT_VERSION = "ledger-1"
REQUESTS_KEPT: Final = 1000

#: The ways an injected failure can look (PREFSTREAM_LEDGER_FAIL_MODE).
FAIL_MODES: Final = (
    "failure", "raise", "hang", "no_think_close", "empty_summary", "summary_too_long", "truncated",
)  # fmt: skip
#: Modes whose failure is a malformed generation parsed by the real parser.
MALFORMED_MODES: Final = frozenset({"no_think_close", "empty_summary", "summary_too_long", "truncated"})


class LedgerFault(RuntimeError):
    """What `update()` raises in fail mode `raise`."""


def malformed_generation(mode: str, summary: str, max_summary_chars: int) -> tuple[str, str]:
    """(raw text, finish_reason) of a generation that is malformed the way `mode` says."""
    think = "<think>\nThe user folded these events; listing them.\n"
    if mode == "no_think_close":
        return think + "Still reasoning when the generation stopped", "stop"
    if mode == "empty_summary":
        return think + "</think>\n\n  \n", "stop"
    if mode == "summary_too_long":
        filler = "x" * max(0, max_summary_chars + 1 - len(summary) - 1)
        return f"{think}</think>\n\n{summary}\n{filler}", "stop"
    if mode == "truncated":
        return f"{think}</think>\n\n{summary[: len(summary) // 2]}", "length"
    raise ValueError(f"not a malformed-generation mode: {mode!r}")


def parse_ledger(summary: str | None) -> list[str]:
    """The event ids a ledger summary lists, in order."""
    return [line for line in (summary or "").split("\n") if line]


class LedgerBackend:
    """Deterministic test double of a preference model (see the module docstring)."""

    name = "ledger"
    model_id = "ledger"
    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        fail_every: int = 0,
        fail_user_prefix: str = "",
        fail_times: int = 0,
        fail_always_prefix: str = "",
        fail_from_version: int = 0,
        fail_mode: str = "failure",
        max_summary_chars: int = 6000,
        max_concurrency: int = 4,
        prompt_token_budget: int = 100_000,
    ) -> None:
        if fail_mode not in FAIL_MODES:
            raise ValueError(f"fail_mode {fail_mode!r}: expected one of {', '.join(FAIL_MODES)}")
        self.delay_s = delay_s
        self.fail_every = fail_every
        self.fail_user_prefix = fail_user_prefix
        self.fail_times = fail_times
        self.fail_always_prefix = fail_always_prefix
        self.fail_from_version = fail_from_version
        self.fail_mode = fail_mode
        self.max_summary_chars = max_summary_chars
        self.max_concurrency = max_concurrency
        self.prompt_token_budget = prompt_token_budget
        self.calls = 0
        self.cancelled = 0
        self.injected = 0  # failures injected, whatever their form
        # The latest requests, for tests in process; bounded, so a long run (a bench) does not keep them all.
        self.requests: deque[UpdateRequest] = deque(maxlen=REQUESTS_KEPT)
        self._failures_by_user: dict[str, int] = {}
        self._started = False
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> LedgerBackend:
        knobs = settings.ledger
        return cls(
            delay_s=knobs.delay_s,
            fail_every=knobs.fail_every,
            fail_user_prefix=knobs.fail_user_prefix,
            fail_times=knobs.fail_times,
            fail_always_prefix=knobs.fail_always_prefix,
            fail_from_version=knobs.fail_from_version,
            fail_mode=knobs.fail_mode,
            max_summary_chars=settings.model.max_summary_chars,
            max_concurrency=knobs.max_concurrency,
            prompt_token_budget=knobs.prompt_token_budget,
        )

    async def start(self) -> None:
        self._started = True

    def count_prompt_tokens(self, previous_summary: str | None, evidence: tuple[Evidence, ...]) -> int:
        # One token per listed id and per triple field, plus a fixed template: cheap and monotone.
        return 8 + len(parse_ledger(previous_summary)) + sum(1 + 3 * len(e.triples) for e in evidence)

    async def update(self, request: UpdateRequest) -> UpdateSuccess | UpdateFailure:
        started = time.monotonic()
        self.calls += 1
        self.requests.append(request)
        fail = self._should_fail(request)  # decided at the call, so the counting does not depend on timing
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if fail and self.fail_mode == "hang":
                await asyncio.Event().wait()  # never set: only a cancel (the time box) ends it
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        ids = parse_ledger(request.previous_summary) + [e.event_id for e in request.evidence]
        summary = "\n".join(ids)
        usage = Usage(
            prompt_tokens=self.count_prompt_tokens(request.previous_summary, request.evidence),
            completion_tokens=len(ids),
            latency_s=time.monotonic() - started,
        )
        if fail:
            if self.fail_mode == "raise":
                raise LedgerFault("ledger: injected exception")
            if self.fail_mode in MALFORMED_MODES:
                text, finish = malformed_generation(self.fail_mode, summary, self.max_summary_chars)
                parsed = outcome(
                    request, text=text, finish_reason=finish, prompt_tokens=usage.prompt_tokens,
                    completion_tokens=len(text), latency_s=usage.latency_s, model_id=self.model_id,
                    max_summary_chars=self.max_summary_chars,
                )  # fmt: skip
                if isinstance(parsed, UpdateSuccess):  # malformed by construction: the parser must refuse it
                    raise AssertionError(f"the parser accepted a {self.fail_mode} generation")
                return parsed
            return UpdateFailure(
                request_id=request.request_id, reason=FailureReason.ENGINE_ERROR.value, message="ledger: injected failure"
            )
        return UpdateSuccess(
            request_id=request.request_id,
            summary=summary,
            usage=usage,
            model=self.model_id,
            prompt_version=self.prompt_version,
        )

    def _should_fail(self, request: UpdateRequest) -> bool:
        if self.fail_every and self.calls % self.fail_every == 0:
            self.injected += 1
            return True
        if request.base_version < self.fail_from_version:
            return False
        user = request.user_id
        if self.fail_always_prefix and user.startswith(self.fail_always_prefix):
            self.injected += 1
            return True
        if self.fail_user_prefix and user.startswith(self.fail_user_prefix):
            failed = self._failures_by_user.get(user, 0)
            if failed < self.fail_times:
                self._failures_by_user[user] = failed + 1
                self.injected += 1
                return True
        return False

    def check_health(self) -> None:
        if self._closed:
            raise BackendDeadError("ledger backend is closed")

    async def aclose(self) -> None:
        self._closed = True
