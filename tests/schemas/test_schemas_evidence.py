"""to_evidence: every kind maps to (query, chosen, rejected) triples the way the authors' converters do."""

from __future__ import annotations

import json
from typing import Any

from prefstream.settings import LimitSettings
from prefstream.schemas.decode import decode_event
from prefstream.schemas.events import Event
from prefstream.schemas.evidence import (
    CONVERSATION_QUERY,
    NO_NEGATIVE,
    NO_POSITIVE,
    STOCK_QUERY,
    TEXT_QUERY,
    Evidence,
    Triple,
    seeded_index,
    to_evidence,
)
from prefstream.schemas.examples import EXAMPLES

LIMITS = LimitSettings()

# Items in the authors' formats (verl/examples/data_preprocess/dataset_transformer/*.py @ 6d4ff478).
MIND_A = "Title: The Brands Queen Elizabeth, Prince Charles, and Prince Philip Swear By\nAbstract: Shop the notebooks."
MIND_B = "Title: 50 Worst Habits For Belly Fat\nAbstract: These seemingly harmless habits are holding you back."
MIND_C = "Title: The Cost of Trump's Aid Freeze\nAbstract: Lt. Ivan Molchanets peeked over a parapet of sand bags."
AMAZON = "Title: Harry Potter and the Chamber of Secrets\nDescription: The Dursleys were so mean and hideous."
AMAZON_NEG = "Title: The Joy of Cooking\nDescription: The classic kitchen reference."
MOVIE = "Title: Toy Story (1995), Genres: Adventure|Animation|Children|Comedy|Fantasy"


def _event(kind: str, **fields: Any) -> Event:
    doc = {"kind": kind, "event_id": "ev-1", "user_id": "u1", "ts": 0} | fields
    return decode_event(b"u1", json.dumps(doc).encode(), LIMITS)


def test_pair_is_its_own_triple() -> None:
    """An AlignX-style pair (post, preferred comment, other comment) is one triple, verbatim."""
    ev = to_evidence(_event("pair", query="Post", chosen="good", rejected={"text": "bad", "item_id": "c9"}))
    assert ev == Evidence(event_id="ev-1", triples=(Triple(query="Post", chosen="good", rejected="bad"),))


def test_pair_without_query_uses_the_stock_request() -> None:
    """A pair without query gets the authors' stock recommendation request, completed with its domain."""
    ev = to_evidence(_event("pair", chosen="a", rejected="b", domain="podcasts"))
    assert ev.triples[0].query == "Please recommend some podcasts to me."


def test_impression_click_against_a_non_click_of_the_same_impression() -> None:
    """A MIND impression: each click is chosen, a non-clicked item of the same impression is rejected."""
    ev = to_evidence(_event("impression", shown=[MIND_A, MIND_B, MIND_C], clicked=[1]))
    (triple,) = ev.triples
    assert triple.query == "Please recommend some news to me."  # eval/unify_recommendation_task.py
    assert triple.chosen == MIND_B
    assert triple.rejected in (MIND_A, MIND_C)
    negatives = [MIND_A, MIND_C]
    assert triple.rejected == negatives[seeded_index("ev-1", 1, 2)]


def test_impression_negative_choice_is_deterministic_and_varies_with_event_id() -> None:
    """The same event always picks the same non-click; different event ids spread over the non-clicks."""
    shown = [f"item {i}" for i in range(10)]
    first = to_evidence(_event("impression", shown=shown, clicked=[0]))
    assert to_evidence(_event("impression", shown=shown, clicked=[0])) == first
    picks = set()
    for n in range(60):
        doc = {"kind": "impression", "event_id": f"ev-{n}", "user_id": "u1", "ts": 0, "shown": shown, "clicked": [0]}
        picks.add(to_evidence(decode_event(None, json.dumps(doc).encode(), LIMITS)).triples[0].rejected)
    assert "item 0" not in picks and len(picks) >= 6


def test_seeded_index_is_the_documented_hash() -> None:
    """seeded_index is SHA-256 of `event_id` LF `salt`, first 8 bytes big-endian, mod n (reproducible elsewhere)."""
    import hashlib

    digest = hashlib.sha256(b"ev-1\n3").digest()
    assert seeded_index("ev-1", 3, 7) == int.from_bytes(digest[:8], "big") % 7


def test_impression_clicks_each_become_a_triple_never_against_a_click() -> None:
    """Two clicks give two triples, in clicked order, and a click is never the rejected item."""
    ev = to_evidence(_event("impression", shown=["a", "b", "c", "d"], clicked=[3, 0]))
    assert [t.chosen for t in ev.triples] == ["d", "a"]
    assert all(t.rejected in ("b", "c") for t in ev.triples)


def test_impression_without_click_yields_no_triples() -> None:
    """An impression without a click is accepted and yields zero triples."""
    assert to_evidence(_event("impression", shown=["a", "b"])) == Evidence(event_id="ev-1", triples=())


def test_impression_where_everything_was_clicked_uses_no_negative_sample() -> None:
    """With no non-clicked item left, the click is kept with the "No negative sample." form."""
    ev = to_evidence(_event("impression", shown=["a"], clicked=[0]))
    assert ev.triples == (Triple(query="Please recommend some news to me.", chosen="a", rejected=NO_NEGATIVE),)


def test_engagement_without_negative_uses_no_negative_sample() -> None:
    """An Amazon-style purchase without a negative becomes (stock query, item, "No negative sample.")."""
    ev = to_evidence(_event("engagement", item=AMAZON, domain="books"))
    assert ev.triples == (Triple(query="Please recommend some books to me.", chosen=AMAZON, rejected=NO_NEGATIVE),)
    assert NO_NEGATIVE == "No negative sample."  # eval/unify_generation_task.py


def test_engagement_with_negatives_picks_one_deterministically() -> None:
    """Given negatives, one is rejected (seeded by event_id), as the authors pair one negative per positive."""
    negatives = [AMAZON_NEG, "Title: Other\nDescription: x"]
    ev = to_evidence(_event("engagement", item=AMAZON, negatives=negatives))
    assert ev.triples[0].rejected == negatives[seeded_index("ev-1", "negative", 2)]
    assert ev.triples[0].query == STOCK_QUERY.format(domain="items")


def test_high_rating_is_a_like_low_rating_a_dislike_middle_nothing() -> None:
    """4/5 likes the item, 2/5 dislikes it (item rejected against "No positive sample."), 3/5 is neutral."""
    like = to_evidence(_event("rating", item=MOVIE, score=4, scale=5, domain="movies")).triples
    assert like == (Triple(query="Please recommend some movies to me.", chosen=MOVIE, rejected=NO_NEGATIVE),)
    dislike = to_evidence(_event("rating", item=MOVIE, score=2, scale=5)).triples
    assert dislike == (Triple(query=STOCK_QUERY.format(domain="items"), chosen=NO_POSITIVE, rejected=MOVIE),)
    assert to_evidence(_event("rating", item=MOVIE, score=3, scale=5)).triples == ()
    assert to_evidence(_event("rating", item=MOVIE, score=1, scale=1)).triples[0].chosen == MOVIE
    assert to_evidence(_event("rating", item=MOVIE, score=0, scale=1)).triples[0].rejected == MOVIE


def test_text_is_positive_only_user_content() -> None:
    """User-written text: query = its context (LongLaMP style) or a stock request, rejected = "No negative sample."."""
    context = "Generate the review text for the product with description A pour-over coffee maker."
    with_context = to_evidence(_event("text", text="Great cup.", context=context)).triples
    assert with_context == (Triple(query=context, chosen="Great cup.", rejected=NO_NEGATIVE),)
    bare = to_evidence(_event("text", text="Great cup.")).triples
    assert bare == (Triple(query=TEXT_QUERY, chosen="Great cup.", rejected=NO_NEGATIVE),)


def test_conversation_user_turns_answer_the_previous_assistant_turn() -> None:
    """A HiCUPID-style dialogue: each user turn is chosen, replying to the assistant's previous turn."""
    turns = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "I just adopted a cat."},
        {"role": "assistant", "content": "Congratulations! What is its name?"},
        {"role": "user", "content": "Miso. I also volunteer at a shelter."},
        {"role": "assistant", "content": "   "},
        {"role": "user", "content": "   "},
    ]
    ev = to_evidence(_event("conversation", turns=turns))
    assert ev.triples == (
        Triple(query=CONVERSATION_QUERY, chosen="I just adopted a cat.", rejected=NO_NEGATIVE),
        Triple(query="Congratulations! What is its name?", chosen="Miso. I also volunteer at a shelter.", rejected=NO_NEGATIVE),
    )


def test_conversation_without_user_turn_yields_no_triples() -> None:
    """A conversation of assistant turns only is accepted and yields nothing."""
    assert to_evidence(_event("conversation", turns=[{"role": "assistant", "content": "Hi"}])).triples == ()


def test_forget_yields_no_triples() -> None:
    """forget carries no evidence: the worker erases the user instead."""
    assert to_evidence(_event("forget")).triples == ()


def test_examples_map_to_the_documented_triples() -> None:
    """The README examples yield the triple counts the docs state."""
    counts = {kind: len(to_evidence(decode_event(None, EXAMPLES[kind].encode(), LIMITS)).triples) for kind in EXAMPLES}
    assert counts == {"pair": 1, "impression": 1, "engagement": 1, "rating": 1, "text": 1, "conversation": 2, "forget": 0}


def test_authors_format_round_trip() -> None:
    """A record in the authors' benchmark format ({query, chosen, rejected}) fed as a pair comes back unchanged."""
    authors = {"query": "Please recommend some news to me.", "chosen": MIND_A, "rejected": MIND_B}
    ev = to_evidence(_event("pair", **authors))
    assert ev.triples[0] == Triple(**authors)
