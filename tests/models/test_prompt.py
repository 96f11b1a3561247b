"""Golden tests: the update prompt is the authors' `build_prompt`, byte for byte.

The reference below is transcribed from `eval/streaming_gen_preference.py::build_prompt` of
github.com/rongtao7/AlignXplorePlus at commit 52e8c4453716df027f4a9fee66acb7e88bb94926
(blob 12b5037c577cedd8f7cbc7ef2d2b35ae7ecb4c13), with only the tokenizer call taken out.
"""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from prefstream.models import prompt as P
from prefstream.schemas.evidence import Evidence, Triple


def authors_messages(history: list[dict[str, str]], past: str | None) -> list[dict[str, str]]:
    """The authors' build_prompt up to (not including) apply_chat_template, transcribed verbatim."""
    system_prompt = """You are an expert User Preference Analyst. Your sole task is to analyze a user's past preference summary (possibly not provided) and new interaction history and summarize the user preferences.\n\nThe user's history will be provided as a sequence of triples, where each triple is `(QUERY, CHOSEN ITEM BY THE USER, REJECTED ITEM BY THE USER)`.\n\nDo not include any introductory phrases, greetings, or any other text outside of this specified structure."""  # noqa: E501

    prompt_str = "\n\n".join(
        [
            f"=====Triple {idx+1}=====\n\n*QUERY:*\n {triple['query']}\n{'*'*5}\n*CHOSEN ITEM BY THE USER:*\n{triple['chosen']}\n{'*'*5}\n*REJECTED ITEM BY THE USER:*\n{triple['rejected']}"  # noqa: E501
            for idx, triple in enumerate(history)
        ]
    )

    full_text = f"""Analyze the past preference summary and the following user interaction history to summarize the comprehensive user preferences in concise language. If past preferences are provided, adjust the preferences by combining past preferences with those reflected in current behavior, removing conflicting parts, and integrating new insights. If no past preferences are provided, derive the final preferences solely from user behavior. The user's history will be provided as a sequence of triples, where each triple is `(QUERY, CHOSEN ITEM BY THE USER, REJECTED ITEM BY THE USER)`.\n=====Past Preference Summary=====\n\n{past if past is not None else "Not Provided."}\n\n=====Interaction History=====\n{prompt_str}\n\n=====END=====\n\nNow, given the above user's past prefernce summary and the interaction history, summarize the user preferences."""  # noqa: E501

    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": full_text.strip()},
    ]


def ev(event_id: str, *triples: tuple[str, str, str]) -> Evidence:
    return Evidence(event_id=event_id, triples=tuple(Triple(query=q, chosen=c, rejected=r) for q, c, r in triples))


EXAMPLE = (
    ev("e1", ("Please recommend some news to me.", "Title: Jazz tonight\nAbstract: A concert.", "Title: Markets fall")),
    ev("e2"),  # an impression without a click contributes nothing
    ev("e3", ("Which laptop?", "A light one", "A heavy one"), ("Dinner?", "Vegetarian", "Steak")),
)

# The user message for EXAMPLE with no previous summary, written out in full.
EXPECTED_USER = (
    "Analyze the past preference summary and the following user interaction history to summarize the "
    "comprehensive user preferences in concise language. If past preferences are provided, adjust the "
    "preferences by combining past preferences with those reflected in current behavior, removing conflicting "
    "parts, and integrating new insights. If no past preferences are provided, derive the final preferences "
    "solely from user behavior. The user's history will be provided as a sequence of triples, where each "
    "triple is `(QUERY, CHOSEN ITEM BY THE USER, REJECTED ITEM BY THE USER)`.\n"
    "=====Past Preference Summary=====\n\nNot Provided.\n\n=====Interaction History=====\n"
    "=====Triple 1=====\n\n*QUERY:*\n Please recommend some news to me.\n*****\n*CHOSEN ITEM BY THE USER:*\n"
    "Title: Jazz tonight\nAbstract: A concert.\n*****\n*REJECTED ITEM BY THE USER:*\nTitle: Markets fall\n\n"
    "=====Triple 2=====\n\n*QUERY:*\n Which laptop?\n*****\n*CHOSEN ITEM BY THE USER:*\nA light one\n*****\n"
    "*REJECTED ITEM BY THE USER:*\nA heavy one\n\n"
    "=====Triple 3=====\n\n*QUERY:*\n Dinner?\n*****\n*CHOSEN ITEM BY THE USER:*\nVegetarian\n*****\n"
    "*REJECTED ITEM BY THE USER:*\nSteak\n\n"
    "=====END=====\n\nNow, given the above user's past prefernce summary and the interaction history, "
    "summarize the user preferences."
)

# sha256 of the rendered EXAMPLE (with and without a summary). If this changes, the bytes the model sees
# changed: bump PROMPT_VERSION (and say in docs/models.md what happens to existing summaries).
PINNED = {"alignxplore-plus-update-v1": "ee3e37472433522edff4ea71ef55610c33244ec090eb74f485e7f44362205a5e"}


def as_history(evidence: tuple[Evidence, ...]) -> list[dict[str, str]]:
    return [{"query": t.query, "chosen": t.chosen, "rejected": t.rejected} for e in evidence for t in e.triples]


def test_user_message_matches_the_written_out_golden() -> None:
    """The user message for a fixed batch is exactly the transcribed template, spelling included."""
    rendered = P.render(None, EXAMPLE)
    assert rendered.messages[1].content == EXPECTED_USER
    assert "prefernce" in rendered.messages[1].content
    assert rendered.triples == 3 and rendered.neutralised == 0


def test_messages_match_the_authors_build_prompt() -> None:
    """System and user messages equal the authors' build_prompt output, with and without a summary."""
    for past in (None, "The user likes jazz.\nAnd vegetarian food."):
        ours = [m.to_dict() for m in P.render(past, EXAMPLE).messages]
        assert ours == authors_messages(as_history(EXAMPLE), past)


_plain = st.text(alphabet=st.characters(blacklist_characters="<>|=*", blacklist_categories=("Cs",)), max_size=40)


@given(
    triples=st.lists(st.tuples(_plain, _plain, _plain), max_size=6),
    past=st.none() | _plain.filter(bool),
)
def test_messages_match_the_authors_for_any_plain_text(triples: list[tuple[str, str, str]], past: str | None) -> None:
    """For text without markers or chat tokens, rendering equals the authors' function."""
    evidence = (ev("e", *triples),)
    ours = [m.to_dict() for m in P.render(past, evidence).messages]
    assert ours == authors_messages(as_history(evidence), past)


def test_chat_frame_matches_qwen3_template(tiny_model_dir) -> None:
    """The final prompt equals Qwen3's chat template (thinking on, generation prompt) applied to the messages."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rendered = P.render("Likes jazz.", EXAMPLE)
    expected = tok.apply_chat_template(
        [m.to_dict() for m in rendered.messages], tokenize=False, add_generation_prompt=True
    )
    assert rendered.text == expected
    assert rendered.text.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_prompt_version_pins_the_rendered_bytes() -> None:
    """Changing the rendered bytes without bumping PROMPT_VERSION fails here."""
    blob = json.dumps([P.render(None, EXAMPLE).text, P.render("Likes jazz.", EXAMPLE).text])
    digest = hashlib.sha256(blob.encode()).hexdigest()
    assert PINNED.get(P.PROMPT_VERSION) == digest, f"rendered bytes changed: {P.PROMPT_VERSION} -> {digest}"


def test_empty_previous_summary_counts_as_none() -> None:
    """An empty previous summary renders the authors' placeholder."""
    assert P.render("", EXAMPLE).text == P.render(None, EXAMPLE).text
