"""PREFSTREAM_MAX_SUMMARY_TOKENS: the prompt asks for the length, the parser trims to it, the baseline fits it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefstream.errors import ConfigError
from prefstream.models import prompt as P
from prefstream.models.backends.common import outcome
from prefstream.models.backends.extractive import ExtractiveBackend, estimate_tokens
from prefstream.models.interface import UpdateSuccess
from prefstream.models.parse import ELLIPSIS, fit_summary, parse_summary
from prefstream.models.tokens import PromptTokenizer
from prefstream.schemas.evidence import Evidence, Triple
from prefstream.settings import Settings

from model_helpers import request


def words(text: str) -> int:
    """A stand-in token count for pure tests: one token per word."""
    return len(text.split())


def test_unset_limit_keeps_the_authors_prompt() -> None:
    """Without a limit the prompt and its version are the authors' (the golden tests pin those bytes)."""
    ev = (Evidence(event_id="e", triples=(Triple(query="q", chosen="c", rejected="r"),)),)
    assert P.render(None, ev, max_summary_tokens=None) == P.render(None, ev)
    assert P.prompt_version(None) == P.PROMPT_VERSION


def test_a_limit_adds_one_sentence_and_names_a_new_prompt_version() -> None:
    """With a limit the closing line asks for it, and the prompt version says so."""
    ev = (Evidence(event_id="e", triples=(Triple(query="q", chosen="c", rejected="r"),)),)
    plain, limited = P.render("old", ev), P.render("old", ev, max_summary_tokens=200)
    user = limited.messages[1].content
    assert user == plain.messages[1].content + " Keep the summary within 200 tokens (about 150 words)."
    assert limited.prompt_version == "alignxplore-plus-update-v1+max-summary-tokens-200"


def test_fit_keeps_whole_sentences_that_fit() -> None:
    """An over-long summary keeps the longest prefix of whole sentences within the limit."""
    summary = "Likes jazz and folk. Avoids metal entirely. Reads history books at night."
    assert fit_summary(summary, 100, words) == (summary, False)
    assert fit_summary(summary, 7, words) == ("Likes jazz and folk. Avoids metal entirely.", True)
    assert fit_summary(summary, 4, words) == ("Likes jazz and folk.", True)
    assert fit_summary("one two three four five six", 3, words) == ("one two three" + ELLIPSIS, True)  # the ellipsis joins the last word


@given(st.text(min_size=1), st.integers(1, 30))
def test_fit_never_exceeds_the_limit_and_keeps_a_prefix(summary: str, limit: int) -> None:
    """Whatever the summary, the fitted one is within the limit and is a prefix of it (but for the ellipsis)."""
    fitted, cut = fit_summary(summary, limit, lambda s: len(s.split()) + 1)  # +1: the count is never zero
    assert len(fitted.split()) + 1 <= limit or fitted == ELLIPSIS
    if cut:
        body = fitted.removesuffix(ELLIPSIS)
        assert " ".join(summary.split()).startswith(" ".join(body.split()))
    else:
        assert fitted == summary


def test_parser_trims_instead_of_failing() -> None:
    """With a token limit, the parser returns the trimmed summary; the character limit still applies after."""
    text = "<think>\nx\n</think>\n\nLikes jazz. Avoids metal. Reads history."
    assert parse_summary(text, finish_reason="stop", max_chars=100, max_tokens=4, count_tokens=words) == (
        "Likes jazz. Avoids metal."
    )


def test_outcome_trims_with_the_model_tokenizer(tiny_model_dir: Path) -> None:
    """The LLM backends' outcome trims to PREFSTREAM_MAX_SUMMARY_TOKENS in the model's own tokens."""
    tok = PromptTokenizer(tiny_model_dir, max_summary_tokens=12)
    long = " ".join(f"The user likes topic {i}." for i in range(20))
    result = outcome(request(1), text=f"<think>\nr\n</think>\n\n{long}", finish_reason="stop", prompt_tokens=1,
                     completion_tokens=1, latency_s=0.1, model_id="m", max_summary_chars=6000, tokenizer=tok)
    assert isinstance(result, UpdateSuccess)
    assert tok.count_text_tokens(result.summary) <= 12 and long.startswith(result.summary)
    assert result.prompt_version == P.prompt_version(12)
    # The same tokenizer renders the limit into the prompts it counts.
    ev = request(1).evidence
    assert tok.count_prompt_tokens(None, ev) > PromptTokenizer(tiny_model_dir).count_prompt_tokens(None, ev)


async def test_extractive_baseline_drops_items_to_fit() -> None:
    """The extractive profile lists fewer items when PREFSTREAM_MAX_SUMMARY_TOKENS is small."""
    settings = Settings.from_env({"PREFSTREAM_MODEL_BACKEND": "extractive", "PREFSTREAM_MAX_SUMMARY_TOKENS": "60"})
    backend = ExtractiveBackend.from_settings(settings)
    triples = tuple(Triple(query="q", chosen=f"Title: Book number {i}", rejected=f"Title: Other {i}") for i in range(8))
    req = request(1)
    out = await backend.update(type(req)(**{**{f: getattr(req, f) for f in req.__struct_fields__},
                                            "evidence": (Evidence(event_id="e", triples=triples),)}))
    assert isinstance(out, UpdateSuccess) and estimate_tokens(out.summary) <= 60
    assert out.summary.count("\n- ") < 16


def test_setting_is_validated() -> None:
    """A limit below 8 tokens is refused with the variable's name."""
    with pytest.raises(ConfigError, match="PREFSTREAM_MAX_SUMMARY_TOKENS must be >= 8"):
        Settings.from_env({"PREFSTREAM_MAX_SUMMARY_TOKENS": "3"})
    assert Settings.from_env({}).model.max_summary_tokens is None
