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
"""

from __future__ import annotations

from prefstream.models.errors import FailureReason, OutputParseError

THINK_CLOSE = "</think>"


def parse_summary(text: str, *, finish_reason: str | None, max_chars: int) -> str:
    """Return the summary in `text`, or raise OutputParseError with a distinct reason."""
    if finish_reason == "length":
        raise OutputParseError(FailureReason.TRUNCATED, "generation hit the max_tokens limit")
    head, sep, tail = text.strip().rpartition(THINK_CLOSE)
    if not sep:
        raise OutputParseError(FailureReason.NO_THINK_CLOSE, "generation has no </think>")
    summary = tail.strip()
    if not summary:
        raise OutputParseError(FailureReason.EMPTY_SUMMARY, "nothing after the last </think>")
    if len(summary) > max_chars:
        raise OutputParseError(
            FailureReason.SUMMARY_TOO_LONG, f"summary has {len(summary)} characters, limit is {max_chars}"
        )
    return summary
