"""The extractive backend: a deterministic, non-LLM **baseline**. It is not AlignXplore+.

It writes a short readable profile from the evidence: what the user chose and what they rejected, most
frequent first, as counted over every update it has folded. The counts live in the summary text itself
(`- <item> (xN)`), so the fold needs no state beyond the previous summary, exactly like the LLM
backends. A previous summary it did not write (say, from an LLM backend before a switch) is not
merged: the profile restarts from the new evidence, and says so in its header.

Use it for the demo and on machines with no GPU and no weights. It needs no tokenizer: its token counts
are an estimate (about 4 characters per token), good enough for the stream's batch sizing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from prefstream.models.interface import UpdateFailure, UpdateRequest, UpdateSuccess, Usage
from prefstream.settings import Settings
from prefstream.schemas.evidence import NO_NEGATIVE, NO_POSITIVE, Evidence

HEADER = "Extractive baseline profile (not AlignXplore+): items the user chose and rejected, most frequent first."
_LABEL_CHARS = 80
_ITEM = re.compile(r"^- (?P<label>.+) \(x(?P<count>\d+)\)$")


# The authors' stand-ins for a missing side of a triple (schemas.evidence): evidence format, not items.
_PLACEHOLDERS = frozenset({NO_NEGATIVE, NO_POSITIVE})


def estimate_tokens(text: str) -> int:
    """This backend's token estimate (it has no tokenizer): about 4 characters per token."""
    return len(text) // 4 + 1


def item_label(text: str) -> str:
    """A short, one-line label for an item: its first non-empty line, whitespace collapsed, capped."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    label = " ".join(line.split())
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "\u2026"


def parse_profile(summary: str | None) -> tuple[dict[str, int], dict[str, int]]:
    """The chosen and rejected counts of a profile this backend wrote; empty for anything else."""
    chosen: dict[str, int] = {}
    rejected: dict[str, int] = {}
    if not summary or not summary.startswith(HEADER):
        return chosen, rejected
    section: dict[str, int] | None = None
    for line in summary.splitlines()[1:]:
        if line == "Chose:":
            section = chosen
        elif line == "Rejected:":
            section = rejected
        elif section is not None and (m := _ITEM.match(line)):
            section[m["label"]] = section.get(m["label"], 0) + int(m["count"])
    return chosen, rejected


def _ranked(counts: dict[str, int], limit: int) -> list[tuple[str, int]]:
    # Stable sort: equal counts keep first-seen order, so the output is deterministic.
    return sorted(counts.items(), key=lambda kv: -kv[1])[:limit]


def fold(previous_summary: str | None, evidence: Iterable[Evidence], *, max_items: int) -> str:
    """The new profile: the previous profile's counts plus this evidence's."""
    chosen, rejected = parse_profile(previous_summary)
    for ev in evidence:
        for t in ev.triples:
            for text, counts in ((t.chosen, chosen), (t.rejected, rejected)):
                label = item_label(text)
                if label and text not in _PLACEHOLDERS:  # "No negative sample." is not an item
                    counts[label] = counts.get(label, 0) + 1
    lines = [HEADER, "Chose:"]
    lines += [f"- {label} (x{n})" for label, n in _ranked(chosen, max_items)] or ["- (nothing yet)"]
    lines.append("Rejected:")
    lines += [f"- {label} (x{n})" for label, n in _ranked(rejected, max_items)] or ["- (nothing yet)"]
    return "\n".join(lines)


class ExtractiveBackend:
    """Deterministic non-LLM baseline; see the module docstring."""

    name = "extractive"
    model_id = "extractive-baseline"
    prompt_version = "extractive-v1"

    def __init__(
        self, *, max_items: int, max_summary_chars: int, prompt_token_budget: int, max_summary_tokens: int | None = None
    ) -> None:
        self.max_items = max_items
        self.max_summary_chars = max_summary_chars
        self.max_summary_tokens = max_summary_tokens
        self.prompt_token_budget = prompt_token_budget
        self.max_concurrency = 64
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractiveBackend:
        m = settings.model
        return cls(
            max_items=m.extractive_max_items,
            max_summary_chars=m.max_summary_chars,
            max_summary_tokens=m.max_summary_tokens,
            prompt_token_budget=m.prompt_token_budget,
        )

    async def start(self) -> None:
        return None

    def count_prompt_tokens(self, previous_summary: str | None, evidence: tuple[Evidence, ...]) -> int:
        chars = len(previous_summary or "") + sum(
            len(t.query) + len(t.chosen) + len(t.rejected) for ev in evidence for t in ev.triples
        )
        return chars // 4 + 1

    async def update(self, request: UpdateRequest) -> UpdateSuccess | UpdateFailure:
        start = time.perf_counter()
        items = self.max_items
        summary = fold(request.previous_summary, request.evidence, max_items=items)
        while self._too_long(summary) and items > 1:  # keep the profile within the limits
            items -= 1
            summary = fold(request.previous_summary, request.evidence, max_items=items)
        return UpdateSuccess(
            request_id=request.request_id,
            summary=summary,
            usage=Usage(prompt_tokens=0, completion_tokens=0, latency_s=time.perf_counter() - start),
            model=self.model_id,
            prompt_version=self.prompt_version,
        )

    def _too_long(self, summary: str) -> bool:
        if len(summary) > self.max_summary_chars:
            return True
        return self.max_summary_tokens is not None and estimate_tokens(summary) > self.max_summary_tokens

    def check_health(self) -> None:
        return None

    async def aclose(self) -> None:
        self._closed = True
