"""`render_preference` and `selection_messages` give the AlignXplore+ authors' downstream prompt byte for byte."""

from __future__ import annotations

from prefstream.client.prompt import render_preference, selection_messages
from prefstream.schemas.profiles import Profile

SUMMARY = "Prefers hands-on learning; dislikes long reference manuals."


def _authors_prompt(prompt: str, response_a: str, response_b: str, persona: str) -> str:
    """`PreferenceEvaluator.format_prompt` of AlignXplorePlus `eval/evaluate_select.py`, transcribed."""
    return (
        f"Determine which response the user prefers based on the user's preferences. "
        f"Please output your selection below in a json format by filling in the placeholders in []:"
        f'{{"selection": "[Item A / Item B]"}}\n'
        f"<Prompt>\n{prompt}\n</Prompt>\n\n"
        f"<Preference>\n{persona}</Preference>\n\n"
        f"<Item A>\n{response_a}\n</Item A>\n\n"
        f"<Item B>\n{response_b}\n</Item B>\n\n"
        f"Now, ONLY output your selection without any other text outside of this specified structure."
    )


def _profile(summary: str) -> Profile:
    return Profile(schema_version=1, user_id="u-1", epoch=1, version=2, summary=summary, events_applied=3,
                   updated_at="2026-01-01T00:00:00.000Z", last_event_ts="2026-01-01T00:00:00Z", model="m",
                   prompt_version="p")  # fmt: skip


def test_preference_block_has_no_newline_before_the_closing_tag() -> None:
    """The block is `<Preference>`, newline, the summary, `</Preference>`, as the authors write it."""
    assert render_preference(_profile(SUMMARY)) == f"<Preference>\n{SUMMARY}</Preference>"
    assert render_preference(SUMMARY) == f"<Preference>\n{SUMMARY}</Preference>"


def test_no_profile_renders_the_authors_placeholder() -> None:
    """A user without a profile gets the authors' `Not Provided.` rather than an empty block."""
    assert render_preference(None) == "<Preference>\nNot Provided.</Preference>"


def test_selection_messages_equal_the_authors_prompt() -> None:
    """The pairwise prompt equals the authors' `format_prompt`, under their one-line system message."""
    messages = selection_messages(_profile(SUMMARY), "Which tutorial?", "Build a project.", "Read the manual.")
    assert messages == [
        {"role": "system", "content": "Generate a task-specific response."},
        {"role": "user", "content": _authors_prompt("Which tutorial?", "Build a project.", "Read the manual.", SUMMARY)},
    ]
