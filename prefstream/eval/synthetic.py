"""Synthetic users with known tastes, so the evaluation runs end to end with no data set to download.

Each user lives in one domain, which fixes the kind of events they produce (the kinds the stream takes):

| domain | event kind   | evidence (via `schemas.evidence`)                          | task            |
| ------ | ------------ | ---------------------------------------------------------- | --------------- |
| books  | `engagement` | the book read, against one it was offered instead          | recommendation  |
| movies | `rating`     | a high rating (liked) or a low one (disliked), 5-star scale | recommendation  |
| news   | `impression` | the clicked headline against an unclicked one of 4 shown    | recommendation  |
| music  | `pair`       | the preferred album of two, with a listening request        | selection       |

A user likes two of their domain's eight topics and dislikes two others; every item is about one topic,
named in its title. Events follow the taste, except that a share of them (`noise`) are flipped, and a
share of users (`drift`) change taste once, in the second half of their history: one liked topic is
dropped (and then avoided) and a neutral one liked instead. The held-out target is a pair event that
follows the final taste. The ground truth is written beside each user as a sentence.

Everything is drawn from one seeded `random.Random`: the same arguments give the same files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import msgspec

from prefstream.schemas.events import EngagementEvent, Event, ImpressionEvent, PairEvent, RatingEvent, encode_event
from prefstream.schemas.evidence import to_evidence

TOPICS: dict[str, tuple[str, ...]] = {
    "books": ("mystery", "romance", "astronomy", "history", "fantasy", "poetry", "cooking", "travel"),
    "movies": ("horror", "comedy", "documentary", "western", "animation", "thriller", "musical", "noir"),
    "news": ("politics", "football", "technology", "climate", "finance", "health", "celebrity", "space"),
    "music": ("jazz", "metal", "classical", "reggae", "techno", "folk", "opera", "punk"),
}
NOUNS = {"books": "novel", "movies": "film", "news": "report", "music": "album"}
TASKS = {"books": "recommendation", "movies": "recommendation", "news": "recommendation", "music": "selection"}
_ADJECTIVES = ("silent", "golden", "broken", "northern", "hidden", "electric", "quiet", "wild", "distant", "bright",
               "final", "secret", "crimson", "paper", "open", "lucky")
_PLACES = ("harbor", "valley", "city", "island", "garden", "station", "river", "mountain", "market", "bridge")
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Taste:
    likes: tuple[str, ...]
    dislikes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SyntheticUser:
    user_id: str
    domain: str
    events: list[Event]
    target: PairEvent
    persona: str
    drift_at: int | None  # index of the first event after the taste changed


def item(rng: random.Random, domain: str, topic: str) -> str:
    title = f"The {rng.choice(_ADJECTIVES).title()} {topic.title()} {NOUNS[domain].title()}"
    label = "Abstract" if domain == "news" else "Description"
    return f"Title: {title}\n{label}: a {topic} {NOUNS[domain]} set by the {rng.choice(_PLACES)}"


def _pick_pair(rng: random.Random, domain: str, taste: Taste, noise: float) -> tuple[str, str]:
    neutral = [t for t in TOPICS[domain] if t not in taste.likes and t not in taste.dislikes]
    good = rng.choice(taste.likes)
    bad = rng.choice(list(taste.dislikes) + neutral[:1])
    chosen, rejected = item(rng, domain, good), item(rng, domain, bad)
    return (rejected, chosen) if rng.random() < noise else (chosen, rejected)


def _event(rng: random.Random, user_id: str, domain: str, n: int, taste: Taste, noise: float) -> Event:
    ts = T0_MS + n * 3_600_000
    eid = f"{user_id}-{n}"
    chosen, rejected = _pick_pair(rng, domain, taste, noise)
    if domain == "books":
        return EngagementEvent(event_id=eid, user_id=user_id, ts=ts, item=chosen, negatives=[rejected], domain=domain)
    if domain == "movies":  # one rating per event: a like or a dislike
        if rng.random() < 0.5:
            return RatingEvent(event_id=eid, user_id=user_id, ts=ts, item=chosen, score=float(rng.choice((4, 5))),
                               scale=5, domain=domain)
        return RatingEvent(event_id=eid, user_id=user_id, ts=ts, item=rejected, score=float(rng.choice((1, 2))),
                           scale=5, domain=domain)
    if domain == "news":
        others = [item(rng, domain, rng.choice(TOPICS[domain])) for _ in range(2)]
        shown = [chosen, rejected, *others]
        order = list(range(4))
        rng.shuffle(order)
        # Only the chosen item is clicked; the evidence pairs it with one unclicked item (seeded by event id).
        return ImpressionEvent(event_id=eid, user_id=user_id, ts=ts, shown=[shown[i] for i in order],
                               clicked=[order.index(0)], domain=domain)
    return PairEvent(event_id=eid, user_id=user_id, ts=ts, query="Which album should I listen to next?",
                     chosen=chosen, rejected=rejected, domain=domain)


def _persona(start: Taste, final: Taste) -> str:
    text = f"The user likes {' and '.join(final.likes)}. The user dislikes {' and '.join(final.dislikes)}."
    gone = [t for t in start.likes if t not in final.likes]
    if gone:
        text += f" The user used to like {' and '.join(gone)} but no longer does."
    return text


def generate_user(rng: random.Random, index: int, *, events: int, noise: float, drift: float,
                  domain: str | None = None) -> SyntheticUser:
    domain = domain or rng.choice(sorted(TOPICS))
    topics = list(TOPICS[domain])
    rng.shuffle(topics)
    taste = start = Taste(likes=tuple(topics[:2]), dislikes=tuple(topics[2:4]))
    drift_at = rng.randrange(events // 2, events) if events >= 2 and rng.random() < drift else None
    user_id = f"synth-{index:04d}"
    evs: list[Event] = []
    for n in range(events):
        if n == drift_at:
            dropped, new = taste.likes[0], topics[4]
            taste = Taste(likes=(new, taste.likes[1]), dislikes=(*taste.dislikes, dropped))
        evs.append(_event(rng, user_id, domain, n, taste, noise))
    good, bad = rng.choice(taste.likes), rng.choice(taste.dislikes)
    target = PairEvent(event_id=f"{user_id}-target", user_id=user_id, ts=T0_MS + events * 3_600_000,
                       query=None if TASKS[domain] == "recommendation" else "Which album should I listen to next?",
                       chosen=item(rng, domain, good), rejected=item(rng, domain, bad), domain=domain)
    return SyntheticUser(user_id=user_id, domain=domain, events=evs, target=target,
                         persona=_persona(start, taste), drift_at=drift_at)


def generate(*, users: int, events: int, noise: float, drift: float, seed: int,
             domain: str | None = None) -> list[SyntheticUser]:
    rng = random.Random(seed)
    return [generate_user(rng, i, events=events, noise=noise, drift=drift, domain=domain) for i in range(users)]


def benchmark_line(user: SyntheticUser) -> bytes:
    """The user in the AlignXplore+ benchmark format, its triples made by the stream's own evidence mapping."""
    history = [
        {"query": t.query, "chosen": t.chosen, "rejected": t.rejected}
        for ev in user.events for t in to_evidence(ev).triples
    ]
    (target,) = to_evidence(user.target).triples
    return msgspec.json.encode({
        "user_id": user.user_id,
        "history": history,
        "target": {"query": target.query, "chosen": target.chosen, "rejected": target.rejected},
        "task": TASKS[user.domain],
        "ground_truth_persona": user.persona,
    })


def write(users: list[SyntheticUser], out: Path, fmt: str) -> list[Path]:
    """benchmark: OUT (one JSONL file); events: OUT.events.jsonl and OUT.targets.jsonl."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "benchmark":
        out.write_bytes(b"".join(benchmark_line(u) + b"\n" for u in users))
        return [out]
    stem = out.with_suffix("") if out.suffix == ".jsonl" else out
    events_path, targets_path = Path(f"{stem}.events.jsonl"), Path(f"{stem}.targets.jsonl")
    events_path.write_bytes(b"".join(encode_event(e) + b"\n" for u in users for e in u.events))
    targets_path.write_bytes(b"".join(encode_event(u.target) + b"\n" for u in users))
    return [events_path, targets_path]
