"""Downstream judges: who answers the selection prompt.

- `ChatJudge` sends the prompt's chat messages to a `models.chat.ChatModel` (in-process vLLM or an
  OpenAI-compatible server) with the paper's settings: thinking off, 16 new tokens, T 0.6, seeded.
- `LexicalJudge` is a deterministic CPU **stand-in**, not a language model: it picks the item whose
  content words the preference text mentions more, counting words in negative passages (a line that says
  rejected, dislikes, avoids, not, ...; the lines under a "Rejected:" heading) against the item. On a tie
  it answers Item A, the position bias a model without information shows. It exists so the whole tool
  runs, and is tested, where no real downstream model is at hand; its numbers measure word overlap.

Both return the raw answer text: the same parser (`eval.selection.parse_answer`) reads every judge.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from prefstream.eval.selection import MAX_NEW_TOKENS, SelectionPrompt
from prefstream.models.chat import ChatModel, ChatRequest


@dataclass(frozen=True, slots=True)
class JudgeReply:
    text: str
    error: str | None = None  # the request failed (no answer at all): counted apart from malformed answers


class Judge(Protocol):
    name: str
    model_id: str

    async def start(self) -> None: ...

    async def answer(self, prompt: SelectionPrompt, *, request_id: str, seed: int) -> JudgeReply: ...

    async def aclose(self) -> None: ...


class ChatJudge:
    """A language model answers the selection prompt (the paper's downstream)."""

    def __init__(self, model: ChatModel, *, max_tokens: int = MAX_NEW_TOKENS, temperature: float = 0.6,
                 top_p: float = 0.95, top_k: int = 20) -> None:
        self.model = model
        self.name = model.name
        self.model_id = model.model_id
        self.max_tokens, self.temperature, self.top_p, self.top_k = max_tokens, temperature, top_p, top_k

    async def start(self) -> None:
        await self.model.start()

    async def answer(self, prompt: SelectionPrompt, *, request_id: str, seed: int) -> JudgeReply:
        reply = await self.model.generate(
            ChatRequest(
                request_id=request_id, messages=prompt.messages(), max_tokens=self.max_tokens,
                temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, seed=seed, thinking=False,
            )
        )
        return JudgeReply(text=reply.text, error=reply.error)

    async def aclose(self) -> None:
        await self.model.aclose()


# --- the lexical stand-in -------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z][a-z'-]{2,}")
STOPWORDS = frozenset(
    """the and for with that this from are was were has have had but not you your their they them his her its
    our out into about over under than then there these those what which who whom when where why how all any
    both each few more most other some such only own same very can will just should now also item items user
    users title description query chosen rejected prefers preferred preference preferences please recommend
    genres genre abstract response responses like likes liked does did doing being been""".split()
)
_NEGATIVE = re.compile(r"\b(reject\w*|dislike\w*|avoid\w*|not|never|no|hate\w*|less)\b", re.IGNORECASE)
_POSITIVE_HEAD = re.compile(r"\b(chose|chosen|like\w*|enjoy\w*|prefer\w*|love\w*)\b", re.IGNORECASE)


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def polarity_counts(preference: str) -> tuple[Counter[str], Counter[str]]:
    """Word counts of the positive and the negative passages of a preference text.

    A heading line (ending in `:`) sets the polarity of the lines under it; any other line is negative
    if it has a negative cue, else it takes its heading's polarity.
    """
    positive: Counter[str] = Counter()
    negative: Counter[str] = Counter()
    section_negative = False
    for line in preference.splitlines():
        stripped = line.strip()
        if stripped.endswith(":") or stripped.startswith("*") and stripped.endswith(":*"):
            section_negative = bool(_NEGATIVE.search(stripped)) and not _POSITIVE_HEAD.search(stripped)
            continue
        for sentence in re.split(r"(?<=[.!?;])\s+", stripped):
            words = content_words(sentence)
            (negative if section_negative or _NEGATIVE.search(sentence) else positive).update(words)
    return positive, negative


def lexical_choice(prompt: SelectionPrompt) -> str:
    """'A' or 'B': the item with the higher (positive - negative) mention score; A on a tie."""
    positive, negative = polarity_counts(prompt.preference)

    def score(item: str) -> int:
        return sum(positive[w] - negative[w] for w in set(content_words(item)))

    return "B" if score(prompt.item_b) > score(prompt.item_a) else "A"


class LexicalJudge:
    """Deterministic word-overlap stand-in for a downstream model (see the module docstring)."""

    name = "lexical"
    model_id = "lexical-overlap-v1"

    async def start(self) -> None:
        return None

    async def answer(self, prompt: SelectionPrompt, *, request_id: str, seed: int) -> JudgeReply:
        return JudgeReply(text=f'{{"selection": "Item {lexical_choice(prompt)}"}}')

    async def aclose(self) -> None:
        return None
