"""Output parsing: the summary is the text after the last </think>; each malformation has its own reason."""

from __future__ import annotations

import pytest

from prefstream.models.errors import FailureReason, OutputParseError
from prefstream.models.parse import parse_summary


def test_summary_is_text_after_last_think_close() -> None:
    """The summary is the stripped text after the last </think>, as in the authors' parse_output."""
    text = "<think>\nfirst\n</think>\nnot this\n</think>\n\n  The user likes jazz.  \n"
    assert parse_summary(text, finish_reason="stop", max_chars=100) == "The user likes jazz."


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        ("<think>\nreasoning that never ends", "stop", FailureReason.NO_THINK_CLOSE),
        ("The user likes jazz.", "stop", FailureReason.NO_THINK_CLOSE),
        ("<think>\nx\n</think>\n\n   \n", "stop", FailureReason.EMPTY_SUMMARY),
        ("<think>\nx\n</think>\n\nThe user li", "length", FailureReason.TRUNCATED),
        ("<think>\nx", "length", FailureReason.TRUNCATED),
        ("<think>\nx\n</think>\n\n" + "a" * 101, "stop", FailureReason.SUMMARY_TOO_LONG),
    ],
)
def test_malformed_generations_fail_with_distinct_reasons(text: str, finish: str, reason: FailureReason) -> None:
    """Missing </think>, empty summary, cut-off generation and over-long summary are distinct failures."""
    with pytest.raises(OutputParseError) as info:
        parse_summary(text, finish_reason=finish, max_chars=100)
    assert info.value.reason is reason


def test_summary_at_the_limit_is_accepted() -> None:
    """A summary of exactly max_chars characters is accepted."""
    assert parse_summary("</think>" + "a" * 100, finish_reason="stop", max_chars=100) == "a" * 100
