"""The time box of every model call: derived from max_tokens and the measured per-token latency.

    timeout = max(floor, start_overhead + max_tokens x token_latency x safety_factor)

`token_latency` starts at a configured prior (PREFSTREAM_TIMEOUT_INITIAL_TOKEN_LATENCY_S) and is then an
exponential moving average of what successful calls measured: wall time per generated token, under the
load the engine had at the time. Wall time includes queueing and prefill, so the figure errs on the
slow side, which is the safe side for a timeout. Calls that generated few tokens are not measured
(their time is mostly overhead). A call that runs past its box is aborted and fails with `timeout`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefstream.settings import ModelSettings

_MIN_TOKENS_TO_MEASURE = 16
_EMA_ALPHA = 0.2


@dataclass
class TimeBox:
    start_overhead_s: float
    initial_token_latency_s: float
    safety_factor: float
    floor_s: float
    token_latency_s: float = field(init=False)
    measured: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.token_latency_s = self.initial_token_latency_s

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> TimeBox:
        return cls(
            start_overhead_s=settings.timeout_start_overhead_s,
            initial_token_latency_s=settings.timeout_initial_token_latency_s,
            safety_factor=settings.timeout_safety_factor,
            floor_s=settings.timeout_floor_s,
        )

    def timeout_for(self, max_tokens: int) -> float:
        return max(self.floor_s, self.start_overhead_s + max_tokens * self.token_latency_s * self.safety_factor)

    def observe(self, latency_s: float, completion_tokens: int) -> None:
        """Fold one successful call's wall time per generated token into the average."""
        if completion_tokens < _MIN_TOKENS_TO_MEASURE or latency_s <= 0:
            return
        per_token = latency_s / completion_tokens
        if self.measured == 0:
            self.token_latency_s = per_token  # the prior is replaced by the first real measurement
        else:
            self.token_latency_s += _EMA_ALPHA * (per_token - self.token_latency_s)
        self.measured += 1
