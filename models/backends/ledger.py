"""The `ledger` test backend: a summary that is the list of event ids folded into it.

It makes the stream's guarantees checkable from the outside. A profile's summary is one event id per
line, in the order the updates folded them, so a test can assert that every accepted event reached
the profile exactly once and in order. It never looks at the evidence text. Optional knobs slow it
down (to keep updates in flight while a rebalance or a forget happens) or make it fail (to exercise
retries, degradation, parking and redrive).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from models.errors import BackendDeadError, FailureReason
from models.interface import UpdateFailure, UpdateRequest, UpdateSuccess, Usage
from schemas.evidence import Evidence

if TYPE_CHECKING:
    from prefstream.settings import Settings

__all__ = ["LedgerBackend", "parse_ledger"]

PROMPT_VERSION = "ledger-1"


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
        max_concurrency: int = 4,
        prompt_token_budget: int = 100_000,
    ) -> None:
        self.delay_s = delay_s
        self.fail_every = fail_every
        self.fail_user_prefix = fail_user_prefix
        self.fail_times = fail_times
        self.max_concurrency = max_concurrency
        self.prompt_token_budget = prompt_token_budget
        self.calls = 0
        self.cancelled = 0
        self.requests: list[UpdateRequest] = []
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
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        failure = self._failure_for(request)
        if failure is not None:
            return UpdateFailure(request_id=request.request_id, reason=failure, message="ledger: injected failure")
        ids = parse_ledger(request.previous_summary) + [e.event_id for e in request.evidence]
        return UpdateSuccess(
            request_id=request.request_id,
            summary="\n".join(ids),
            usage=Usage(
                prompt_tokens=self.count_prompt_tokens(request.previous_summary, request.evidence),
                completion_tokens=len(ids),
                latency_s=time.monotonic() - started,
            ),
            model=self.model_id,
            prompt_version=self.prompt_version,
        )

    def _failure_for(self, request: UpdateRequest) -> str | None:
        if self.fail_every and self.calls % self.fail_every == 0:
            return FailureReason.ENGINE_ERROR.value
        if self.fail_user_prefix and request.user_id.startswith(self.fail_user_prefix):
            failed = self._failures_by_user.get(request.user_id, 0)
            if failed < self.fail_times:
                self._failures_by_user[request.user_id] = failed + 1
                return FailureReason.ENGINE_ERROR.value
        return None

    def check_health(self) -> None:
        if self._closed:
            raise BackendDeadError("ledger backend is closed")

    async def aclose(self) -> None:
        self._closed = True
