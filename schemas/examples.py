"""One valid event of each kind, written by hand as a producer would, in the authors' item formats.

`docs/schemas.md` shows exactly these (`python -m prefstream.schemas.generate` checks it), and the tests decode
them, validate them against the JSON Schema and map them to evidence.
"""

from __future__ import annotations

from typing import Final

from prefstream.models.prompt import PROMPT_VERSION
from prefstream.schemas.failures import FailureRecord
from prefstream.schemas.profiles import Profile, record_version
from prefstream.schemas.updates import UpdateRecord

EXAMPLES: Final[dict[str, str]] = {
    "pair": """{
  "kind": "pair",
  "event_id": "01J9ZQ3V7R5M2K8T4N6P0A1B2C",
  "user_id": "u-1842",
  "ts": "2026-01-31T08:15:00.250Z",
  "source": "forum-app",
  "query": "What's the best way to learn a new programming language quickly?",
  "chosen": "Build a small project you care about and look things up as you go.",
  "rejected": "Read the official reference manual cover to cover first."
}""",
    "impression": """{
  "kind": "impression",
  "event_id": "imp-77310",
  "user_id": "u-1842",
  "ts": 1769847300000,
  "shown": [
    {"item_id": "N55528", "text": "Title: The Brands Queen Elizabeth, Prince Charles, and Prince Philip Swear By\\nAbstract: Shop the notebooks, jackets, and more that the royals can't live without."},
    {"item_id": "N19639", "text": "Title: 50 Worst Habits For Belly Fat\\nAbstract: These seemingly harmless habits are holding you back."},
    {"item_id": "N61837", "text": "Title: The Cost of Trump's Aid Freeze in the Trenches of Ukraine's War\\nAbstract: Lt. Ivan Molchanets peeked over a parapet of sand bags."}
  ],
  "clicked": [2]
}""",
    "engagement": """{
  "kind": "engagement",
  "event_id": "order-5521-line-1",
  "user_id": "u-1842",
  "ts": "2026-01-31T09:00:00+01:00",
  "domain": "books",
  "item": {"item_id": "0439064872", "text": "Title: Harry Potter and the Chamber of Secrets\\nDescription: The Dursleys were so mean and hideous that summer that all Harry Potter wanted was to get back to Hogwarts."},
  "meta": {"action": "purchase"}
}""",
    "rating": """{
  "kind": "rating",
  "event_id": "rating-1-296",
  "user_id": "u-1842",
  "ts": 1769850000000,
  "domain": "movies",
  "item": "Title: Pulp Fiction (1994), Genres: Comedy|Crime|Drama|Thriller",
  "score": 4.5,
  "scale": 5
}""",
    "text": """{
  "kind": "text",
  "event_id": "review-99120",
  "user_id": "u-1842",
  "ts": "2026-01-31T10:30:00Z",
  "context": "Generate the review text for the product with description A compact pour-over coffee maker.",
  "text": "Brews a clean, bright cup. I wish the carafe were insulated, but for light roasts it is perfect."
}""",
    "conversation": """{
  "kind": "conversation",
  "event_id": "chat-3141-5",
  "user_id": "u-1842",
  "ts": "2026-01-31T11:00:00Z",
  "turns": [
    {"role": "user", "content": "Can you suggest a weekend trip? I get bored on beaches."},
    {"role": "assistant", "content": "How about a hiking weekend in the Dolomites?"},
    {"role": "user", "content": "Yes! Mountains and long walks are exactly my thing."}
  ]
}""",
    "forget": """{
  "kind": "forget",
  "event_id": "gdpr-req-2026-0042",
  "user_id": "u-1842",
  "ts": "2026-02-01T00:00:00Z"
}""",
}

# The records the worker publishes, as the `vllm` backend writes them: the model id is the default
# PREFSTREAM_MODEL and the prompt version is the template's own, so the docs cannot name one no record has.
PROFILE_EXAMPLE: Final = Profile(
    schema_version=record_version(None), user_id="u-1842", epoch=1, version=3,
    summary="Prefers active, outdoor travel (mountains, hiking) over beach holidays; reads fantasy novels; "
    "favours practical, hands-on advice.",
    events_applied=12, updated_at="2026-01-31T11:00:02.125Z", last_event_ts="2026-01-31T11:00:00.000Z",
    model="VanillaH1/AlignXplore-Plus", prompt_version=PROMPT_VERSION, backend="vllm", update_events=4,
    update_triples=5, last_event_id="chat-3141-5", prompt_tokens=1630, completion_tokens=912,
)  # fmt: skip

FAILURE_EXAMPLE: Final = FailureRecord(
    schema_version=record_version(None), user_id="u-1842", epoch=1, base_version=3, reason="timeout",
    attempts=2, event_count=4, first_event_id="review-99120", last_event_id="chat-3141-5",
    first_event_ts="2026-01-31T10:30:00.000Z", last_event_ts="2026-01-31T11:00:00.000Z",
    failed_at="2026-01-31T11:15:31.002Z", model="VanillaH1/AlignXplore-Plus", prompt_version=PROMPT_VERSION,
    backend="vllm",
)  # fmt: skip

# The update that wrote PROFILE_EXAMPLE.
UPDATE_EXAMPLE: Final = UpdateRecord(
    schema_version=record_version(None), user_id="u-1842", epoch=1, version=3,
    request_id="5f0c2a9e7d3b4c1e8a6f9b2d4e7c1a3b",
    event_ids=["chat-3141-2", "chat-3141-3", "chat-3141-4", "chat-3141-5"], events_applied=12, triples=5,
    first_event_ts="2026-01-31T10:58:12.000Z", last_event_ts="2026-01-31T11:00:00.000Z", prompt_tokens=1630,
    completion_tokens=912, summary_chars=len(PROFILE_EXAMPLE.summary), model=PROFILE_EXAMPLE.model,
    prompt_version=PROMPT_VERSION, backend="vllm", attempt=1, degraded=False,
    queued_at="2026-01-31T10:58:12.410Z", requested_at="2026-01-31T11:00:00.530Z",
    finished_at="2026-01-31T11:00:01.980Z", applied_at="2026-01-31T11:00:02.125Z", summary="",
)  # fmt: skip
