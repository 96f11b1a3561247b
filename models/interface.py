"""The interface between the stream and a preference model backend.

The stream sends `UpdateRequest`s and gets back, per request and as soon as each is done, an
`UpdateSuccess` or an `UpdateFailure`. Backends are chosen by `PREFSTREAM_MODEL_BACKEND` and never
fall back silently. A request is cancelled (and the backend's work for it aborted) by cancelling the
task awaiting `update()`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from prefstream.schemas.evidence import Evidence


class UpdateRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Fold `evidence` into `previous_summary` for one user."""

    request_id: str
    user_id: str
    epoch: int
    base_version: int  # the profile version this update builds on (0: no profile yet)
    previous_summary: str | None
    evidence: tuple[Evidence, ...]
    degraded: bool = False  # a retry after failures: the backend may use a smaller reasoning budget
    # The user's tenant (None: none). LLM backends salt the prefix cache with it (`cache_salt`), so cached
    # prompt blocks are never shared across tenants. `user_id` is the user key (`tenant/user_id`).
    tenant: str | None = None
    # Scheduling priority in the engine: 0 for live updates, higher (runs later) for a backfill's updates.
    priority: int = 0


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class UpdateSuccess(msgspec.Struct, frozen=True, kw_only=True, tag="success"):
    request_id: str
    summary: str
    usage: Usage
    model: str
    prompt_version: str


class UpdateFailure(msgspec.Struct, frozen=True, kw_only=True, tag="failure"):
    """A failed update. `reason` is a stable code (see models.errors.FailureReason)."""

    request_id: str
    reason: str
    message: str
    retryable: bool = True


UpdateOutcome = UpdateSuccess | UpdateFailure


@runtime_checkable
class PreferenceModel(Protocol):
    """What every backend provides."""

    name: str  # backend name: vllm, openai, extractive, ledger
    model_id: str  # recorded in every profile
    prompt_version: str  # recorded in every profile
    max_concurrency: int  # how many requests the stream should keep in flight
    prompt_token_budget: int  # the largest prompt (summary + evidence) an update may take, in tokens

    async def start(self) -> None:
        """Bring the backend up (build the engine, open the pool). Called before the worker joins its group."""

    def count_prompt_tokens(self, previous_summary: str | None, evidence: tuple[Evidence, ...]) -> int:
        """Tokens the rendered prompt for this update would take, counted with the model's own tokenizer."""

    async def update(self, request: UpdateRequest) -> UpdateSuccess | UpdateFailure:
        """Run one update. Never raises for a per-request failure; cancelling aborts the request."""

    def check_health(self) -> None:
        """Raise models.errors.BackendDeadError when the backend can no longer serve."""

    async def aclose(self) -> None:
        """Release the engine or pool. Idempotent."""
