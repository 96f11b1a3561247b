"""Evidence: what the preference model sees of an event.

The AlignXplore+ model consumes triples (query, chosen, rejected). `to_evidence(event)` is the single
place where an accepted event becomes its evidence unit.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

from prefstream.schemas.events import (
    ConversationEvent,
    EngagementEvent,
    Event,
    ImpressionEvent,
    PairEvent,
    RatingEvent,
    TextEvent,
    item_text,
)


class Triple(msgspec.Struct, frozen=True, kw_only=True):
    """One unit of preference evidence, in the authors' training format. All three are plain text."""

    query: str
    chosen: str
    rejected: str


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """The triples one event contributes. May be empty (an impression without a click)."""

    event_id: str
    triples: tuple[Triple, ...] = ()


# --- The mapping -------------------------------------------------------------------------------------
#
# Sources (the authors' converters), all at github.com/DreamFong/AlignXplorePlus
# @ 6d4ff47858f5390eedaac952dde482127ab70973 unless noted
# (the first commit of AlignXplore+; rongtao7/AlignXplorePlus @ 52e8c445 is the same code with some eval
# scripts removed):
#   eval/unify_recommendation_task.py      MIND: a missing query becomes "Please recommend some news to me."
#   sft/preprocess.py (@ 272d5ca3)         MovieLens: "Please recommend some movies to me."
#   eval/unify_generation_task.py          positive-only user content: a missing rejected becomes "No negative sample."
#   verl/.../mind_dataset_transformer.py   an impression click is paired with a non-click of the same impression;
#                                          an item renders as its text ("Title: ...\nAbstract: ...")
#   verl/.../longlamp_dataset_transformer.py  user-written text: query = what it responds to, chosen = the text
#   verl/.../alignx_dataset_transformer.py    pairs: (post, preferred comment, less preferred comment)

#: The authors' stock request for recommendation logs without a query; `{domain}` is the event's `domain`.
STOCK_QUERY: Final = "Please recommend some {domain} to me."
#: Default `domain` per kind: MIND (news) for impressions, a neutral plural otherwise.
DEFAULT_DOMAIN: Final = {"impression": "news", "engagement": "items", "rating": "items", "pair": "items"}
#: The authors' placeholder when an interaction has no negative (eval/unify_generation_task.py).
NO_NEGATIVE: Final = "No negative sample."
#: Our mirror image of NO_NEGATIVE for a low rating, which has a rejected item but no chosen one.
NO_POSITIVE: Final = "No positive sample."
#: Query of user-written text without `context` (ours: the authors' UGC always had a context).
TEXT_QUERY: Final = "Generate content written by the user."
#: Query of a user turn that opens a conversation (ours: the authors' rendering of dialogues is unpublished).
CONVERSATION_QUERY: Final = "Start a conversation with the AI assistant."
#: A rating at or above this fraction of `scale` is a like; at or below RATING_LOW, a dislike; between, neutral.
RATING_HIGH: Final = 0.7
RATING_LOW: Final = 0.4


def to_evidence(event: Event) -> Evidence:
    """The triples `event` contributes to the model's evidence, in the authors' (query, chosen, rejected) form.

    Deterministic: the same event always yields the same triples (choices are seeded by `event_id`), so a
    prompt can be rebuilt from the events it was made of. A `forget` event yields no triples (the worker
    erases instead), and so may an impression without a click, a neutral rating or a conversation without
    a user turn: the event still counts as applied.
    """
    if isinstance(event, PairEvent):
        triples = [Triple(query=_query(event), chosen=item_text(event.chosen), rejected=item_text(event.rejected))]
    elif isinstance(event, ImpressionEvent):
        triples = _impression(event)
    elif isinstance(event, EngagementEvent):
        rejected = NO_NEGATIVE
        if event.negatives:
            rejected = item_text(event.negatives[seeded_index(event.event_id, "negative", len(event.negatives))])
        triples = [Triple(query=_query(event), chosen=item_text(event.item), rejected=rejected)]
    elif isinstance(event, RatingEvent):
        triples = _rating(event)
    elif isinstance(event, TextEvent):
        query = event.context if event.context else TEXT_QUERY
        triples = [Triple(query=query, chosen=event.text, rejected=NO_NEGATIVE)]
    elif isinstance(event, ConversationEvent):
        triples = _conversation(event)
    else:
        triples = []
    return Evidence(event_id=event.event_id, triples=tuple(triples))


def seeded_index(event_id: str, salt: str | int, n: int) -> int:
    """A reproducible choice in range(n): the first 8 bytes of SHA-256(`event_id` LF `salt`), big-endian, mod n.

    Written out so that other languages can reproduce the prompts prefstream builds.
    """
    digest = hashlib.sha256(f"{event_id}\n{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def _query(event: PairEvent | ImpressionEvent | EngagementEvent | RatingEvent) -> str:
    if event.query:
        return event.query
    domain = event.domain or DEFAULT_DOMAIN[str(type(event).__struct_config__.tag)]
    return STOCK_QUERY.format(domain=domain)


def _impression(event: ImpressionEvent) -> list[Triple]:
    # As mind_dataset_transformer.py: each click (-1) against one non-click (-0) of the same impression.
    # The authors drew the non-click with random.choice; here the draw is seeded by event_id and the
    # clicked index, so it is reproducible. If every shown item was clicked there is no non-click:
    # the authors skipped such impressions; we keep the click with the "No negative sample." form.
    clicked = set(event.clicked)
    negatives = [item for i, item in enumerate(event.shown) if i not in clicked]
    query = _query(event)
    triples = []
    for index in event.clicked:
        rejected = NO_NEGATIVE
        if negatives:
            rejected = item_text(negatives[seeded_index(event.event_id, index, len(negatives))])
        triples.append(Triple(query=query, chosen=item_text(event.shown[index]), rejected=rejected))
    return triples


def _rating(event: RatingEvent) -> list[Triple]:
    # MovieLens ratings were all treated as positives by the authors (ml_dataset_transformer.py); a
    # streaming service sees low ratings too, and a dislike is evidence worth keeping.
    fraction = event.score / event.scale
    text = item_text(event.item)
    if fraction >= RATING_HIGH:
        return [Triple(query=_query(event), chosen=text, rejected=NO_NEGATIVE)]
    if fraction <= RATING_LOW:
        return [Triple(query=_query(event), chosen=NO_POSITIVE, rejected=text)]
    return []


def _conversation(event: ConversationEvent) -> list[Triple]:
    # Each non-empty user turn is something the user chose to say, in reply to the assistant's last turn.
    triples = []
    previous: str | None = None
    for turn in event.turns:
        if turn.role == "system":
            continue
        if turn.role == "user" and turn.content.strip():
            triples.append(Triple(query=previous or CONVERSATION_QUERY, chosen=turn.content, rejected=NO_NEGATIVE))
        previous = turn.content if turn.role == "assistant" and turn.content.strip() else None
    return triples
