"""Turn a generation into a summary, or say precisely why it is not one. Pure.

As in the authors' `parse_output`: the summary is the text after the last `</think>`, stripped. The
prompt ends with `<|im_start|>assistant\\n` (thinking on), so the model writes `<think>` itself and a
well-formed answer is `<think>\\n...\\n</think>\\n\\n<summary>`. The checks, in order:

1. the generation hit the token limit (`finish_reason == "length"`)  -> `truncated`
2. no `</think>` anywhere                                             -> `no_think_close`
3. nothing but whitespace after the last `</think>`                   -> `empty_summary`
4. summary longer than the configured number of characters            -> `summary_too_long`

A truncated generation is a failure even when it happens to contain `</think>`: the summary after it
was cut off mid-way, and storing half a profile would be worse than keeping the old one.

With PREFSTREAM_MAX_SUMMARY_TOKENS set, a parsed summary over that many tokens is not a failure: it is
trimmed to whole sentences that fit (`fit_summary`); the prompt asked the model for that length.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prefstream.models.errors import FailureReason, OutputParseError

THINK_CLOSE = "</think>"


def parse_summary(
    text: str,
    *,
    finish_reason: str | None,
    max_chars: int,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> str:
    """Return the summary in `text` (trimmed to `max_tokens` if given), or raise OutputParseError with a reason."""
    if finish_reason == "length":
        raise OutputParseError(FailureReason.TRUNCATED, "generation hit the max_tokens limit")
    head, sep, tail = text.strip().rpartition(THINK_CLOSE)
    if not sep:
        raise OutputParseError(FailureReason.NO_THINK_CLOSE, "generation has no </think>")
    summary = tail.strip()
    if not summary:
        raise OutputParseError(FailureReason.EMPTY_SUMMARY, "nothing after the last </think>")
    if max_tokens is not None:
        if count_tokens is None:
            raise ValueError("max_tokens needs count_tokens")
        summary, _ = fit_summary(summary, max_tokens, count_tokens)
    if len(summary) > max_chars:
        raise OutputParseError(
            FailureReason.SUMMARY_TOO_LONG, f"summary has {len(summary)} characters, limit is {max_chars}"
        )
    return summary


# Where a summary may be cut: after a sentence's closing punctuation, or at a line break.
_CUT = re.compile(r"(?<=[.!?;])\s+|\n+")
ELLIPSIS = "\u2026"


def fit_summary(summary: str, max_tokens: int, count_tokens: Callable[[str], int]) -> tuple[str, bool]:
    """`summary` cut to at most `max_tokens` tokens, and whether it was cut (PREFSTREAM_MAX_SUMMARY_TOKENS).

    The trim policy: keep the longest prefix of whole sentences (or lines) that fits, so what is kept
    reads as the model wrote it; the model lists the strongest preferences first, so the tail is what
    goes. Only when not even the first sentence fits is it cut between words, marked with an ellipsis.
    """
    if count_tokens(summary) <= max_tokens:
        return summary, False
    kept = ""
    for cut in _CUT.finditer(summary):
        prefix = summary[: cut.start()].rstrip()
        if count_tokens(prefix) > max_tokens:
            break
        kept = prefix
    if kept:
        return kept, True
    words = summary.split()
    lo, hi = 0, len(words)  # the most words w with count(words[:w] + ellipsis) <= max_tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(" ".join(words[:mid]) + ELLIPSIS) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return (" ".join(words[:lo]) + ELLIPSIS) if lo else ELLIPSIS, True
