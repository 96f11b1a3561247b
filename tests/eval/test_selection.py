"""The authors' selection prompt, byte for byte, and the parsing of downstream answers."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from prefstream.eval.selection import SelectionPrompt, parse_answer, raw_history_preference, user_message
from prefstream.schemas.evidence import Triple

# The authors' format_prompt (eval/evaluate_select.py @ 52e8c445) for these arguments, written out by hand.
GOLDEN = (
    "Determine which response the user prefers based on the user's preferences. Please output your selection "
    'below in a json format by filling in the placeholders in []:{"selection": "[Item A / Item B]"}\n'
    "<Prompt>\nQ?\n</Prompt>\n\n<Preference>\nLikes jazz.</Preference>\n\n<Item A>\nx\n</Item A>\n\n"
    "<Item B>\ny\n</Item B>\n\nNow, ONLY output your selection without any other text outside of this specified "
    "structure."
)


def test_user_message_is_the_authors_bytes() -> None:
    """The selection prompt's user message equals the authors' template, newlines included."""
    assert user_message("Q?", "Likes jazz.", "x", "y") == GOLDEN


def test_prompt_puts_the_chosen_item_where_the_answer_says() -> None:
    """`chosen_first` decides whether the chosen item is Item A, and the expected answer follows it."""
    t = Triple(query="q", chosen="good", rejected="bad")
    a = SelectionPrompt.build(t, "p", chosen_first=True)
    b = SelectionPrompt.build(t, "p", chosen_first=False)
    assert (a.item_a, a.item_b, a.answer) == ("good", "bad", "A")
    assert (b.item_a, b.item_b, b.answer) == ("bad", "good", "B")
    system, user = a.messages()
    assert system.role == "system" and system.content == "Generate a task-specific response."
    assert user.role == "user" and "<Item A>\ngood\n</Item A>" in user.content


def test_raw_history_preference_keeps_the_authors_format() -> None:
    """The direct baseline's text lists the triples as the authors' format_profile does (typo included)."""
    text = raw_history_preference([Triple(query="q1", chosen="c1", rejected="r1")])
    assert text.startswith("The user's history will be provided as a sequence of triples")
    assert "=====Tripe 1=====\n\n*QUERY:*\n q1\n*****\n*CHOSEN ITEM BY THE USER:*\nc1\n*****\n" in text
    assert text.endswith("*REJECTED ITEM BY THE USER:*\nr1\n\n=====END=====")


class TestParseAnswer:
    def test_well_formed_answers(self) -> None:
        """The expected JSON, with or without spaces, think block, code fence or GPT-OSS marker, is `ok`."""
        for text, choice in [
            ('{"selection": "Item A"}', "A"),
            ('{"selection":"Item B"}', "B"),
            ('<think>\n\n</think>\n\n{"selection": "Item B"}', "B"),
            ('```json\n{"selection": "item a"}\n```', "A"),
            ('analysis...assistantfinal{"selection": "Item B"}', "B"),
            ('{"selection": "B"}', "B"),
            ('{"selection": "[Item A]"}', "A"),
        ]:
            parsed = parse_answer(text)
            assert (parsed.status, parsed.choice) == ("ok", choice), text

    def test_malformed_answers(self) -> None:
        """No JSON object at all (empty, prose, cut off, gibberish) is `malformed` with no choice."""
        for text in ["", "Item A", "I prefer the first one.", '{"selection": "Item', "ong fallectlebr~ S $ket . ;"]:
            parsed = parse_answer(text)
            assert (parsed.status, parsed.choice) == ("malformed", None), text

    def test_both_items(self) -> None:
        """An answer naming both items, like the echoed placeholder, is `both`."""
        for text in ['{"selection": "[Item A / Item B]"}', '{"selection": "Item A and Item B"}']:
            assert parse_answer(text).status == "both", text

    def test_neither_item(self) -> None:
        """A JSON object without a usable `selection` is `neither`."""
        for text in ['{"selection": "Item C"}', '{"choice": "Item A"}', '{"selection": 1}', '{"selection": ""}']:
            parsed = parse_answer(text)
            assert (parsed.status, parsed.choice) == ("neither", None), text

    def test_only_text_after_the_last_think_close_counts(self) -> None:
        """A selection inside the reasoning is ignored; the answer after `</think>` decides."""
        assert parse_answer('<think>{"selection": "Item A"}</think>{"selection": "Item B"}').choice == "B"
        assert parse_answer('<think>{"selection": "Item A"}</think>').status == "malformed"

    @given(st.text())
    def test_any_text_gets_a_status_and_never_raises(self, text: str) -> None:
        """Whatever a model writes, parsing returns one of the four statuses, with a choice only when `ok`."""
        parsed = parse_answer(text)
        assert parsed.status in ("ok", "both", "neither", "malformed")
        assert (parsed.choice is not None) == (parsed.status == "ok")

    @given(st.sampled_from(["Item A", "Item B", "item a", "ITEM B", "A", "b"]), st.text(alphabet="xyz .\n", max_size=20),
           st.text(alphabet="xyz .\n", max_size=20))
    def test_a_json_answer_surrounded_by_prose_is_read(self, value: str, before: str, after: str) -> None:
        """A well-formed JSON answer is read whatever prose (without braces) surrounds it."""
        parsed = parse_answer(before + json.dumps({"selection": value}) + after)
        assert parsed.status == "ok" and parsed.choice == value.strip()[-1].upper()

    @given(st.text(alphabet=st.characters(blacklist_characters="{")))
    def test_text_without_a_brace_is_malformed(self, text: str) -> None:
        """Without a `{` there is no JSON object, so the answer is malformed."""
        assert parse_answer(text).status == "malformed"
