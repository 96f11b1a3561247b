"""The AlignXplore+ update prompt, rendered exactly as the authors trained it. Pure functions.

Source: `build_prompt` in `eval/streaming_gen_preference.py` of github.com/rongtao7/AlignXplorePlus at
commit 52e8c4453716df027f4a9fee66acb7e88bb94926 (file blob 12b5037c577cedd8f7cbc7ef2d2b35ae7ecb4c13, last
changed in 272d5ca3c8b25e94a8ff56c08316dabe0270160b). The SFT data (`sft/postprocess.py`) uses the same
template. Its text is kept byte for byte, the authors' spelling included ("prefernce"): the model was
trained on these bytes. The chat frame is Qwen3's template with thinking on (no `enable_thinking` flag,
so the generation prompt ends in `<|im_start|>assistant\\n` and the model opens `<think>` itself).

Untrusted text (every triple field and the previous summary, which was itself generated from user text)
is neutralised before it is placed in the template: chat-template tokens (`<|...|>`, `<think>`,
`</think>`, the tool tags) and the template's own markers (runs of `=` or `*`, the `*QUERY:*`-style
labels) are replaced with look-alike characters, so nothing is dropped and nothing can forge structure.
`models.tokens` then checks, per prompt, that every special token in the token ids came from the frame.

`PROMPT_VERSION` names this template. It is recorded in every profile; change it whenever the rendered
bytes change (a golden test pins them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prefstream.schemas.evidence import Evidence, Triple

PROMPT_VERSION = "alignxplore-plus-update-v1"
PROMPT_SOURCE = (
    "github.com/rongtao7/AlignXplorePlus@52e8c4453716df027f4a9fee66acb7e88bb94926:"
    "eval/streaming_gen_preference.py#build_prompt"
)

NOT_PROVIDED = "Not Provided."

SYSTEM_PROMPT = (
    "You are an expert User Preference Analyst. Your sole task is to analyze a user's past preference summary "
    "(possibly not provided) and new interaction history and summarize the user preferences.\n\n"
    "The user's history will be provided as a sequence of triples, where each triple is "
    "`(QUERY, CHOSEN ITEM BY THE USER, REJECTED ITEM BY THE USER)`.\n\n"
    "Do not include any introductory phrases, greetings, or any other text outside of this specified structure."
)

_INSTRUCTION = (
    "Analyze the past preference summary and the following user interaction history to summarize the "
    "comprehensive user preferences in concise language. If past preferences are provided, adjust the "
    "preferences by combining past preferences with those reflected in current behavior, removing conflicting "
    "parts, and integrating new insights. If no past preferences are provided, derive the final preferences "
    "solely from user behavior. The user's history will be provided as a sequence of triples, where each "
    "triple is `(QUERY, CHOSEN ITEM BY THE USER, REJECTED ITEM BY THE USER)`."
)

_CLOSING = (
    "Now, given the above user's past prefernce summary and the interaction history, summarize the user preferences."
)

# Ours, not the authors': appended to the closing line only when PREFSTREAM_MAX_SUMMARY_TOKENS is set (the
# model was not trained on it; the parser trims what overshoots). Unset, the prompt keeps the authors' bytes.
_LENGTH_LIMIT = " Keep the summary within {n} tokens (about {words} words)."

# Markers of the template, with how often each occurs: fixed ones once, per-triple ones N times.
FIXED_MARKERS = ("=====Past Preference Summary=====", "=====Interaction History=====", "=====END=====")
TRIPLE_MARKERS = ("*QUERY:*", "*CHOSEN ITEM BY THE USER:*", "*REJECTED ITEM BY THE USER:*")
SEPARATOR = "*" * 5  # twice per triple

# Qwen3 chat frame (its chat template, system + user, add_generation_prompt, thinking on).
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


# --- neutralisation ---------------------------------------------------------------------------------------

# Look-alikes: single angle quotation marks for < >, fullwidth equals, the asterisk operator.
_LT, _GT, _EQ, _STAR = "\u2039", "\u203a", "\uff1d", "\u2217"

_CHAT_TOKEN = re.compile(r"<\|([^<>|\s]{1,64})\|>")  # <|im_start|>, <|endoftext|>, <|fim_pad|>, ...
_TAG = re.compile(r"<(/?)(think|tool_call|tool_response)>", re.IGNORECASE)  # Qwen3's added tags
_LABEL = re.compile(r"\*(QUERY|CHOSEN ITEM BY THE USER|REJECTED ITEM BY THE USER):\*", re.IGNORECASE)
_EQ_RUN = re.compile(r"={3,}")
_STAR_RUN = re.compile(r"\*{3,}")


def neutralise(text: str) -> tuple[str, int]:
    """Return `text` with chat tokens and template markers made inert, and how many were replaced.

    Every character the user wrote stays visible (as a look-alike), so no evidence is silently lost.
    """
    count = 0

    def sub(pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], s: str) -> str:
        nonlocal count
        out, n = pattern.subn(repl, s)
        count += n
        return out

    text = sub(_CHAT_TOKEN, lambda m: f"{_LT}|{m.group(1)}|{_GT}", text)
    text = sub(_TAG, lambda m: f"{_LT}{m.group(1)}{m.group(2)}{_GT}", text)
    text = sub(_LABEL, lambda m: f"{_STAR}{m.group(1)}:{_STAR}", text)
    text = sub(_EQ_RUN, lambda m: _EQ * len(m.group(0)), text)
    text = sub(_STAR_RUN, lambda m: _STAR * len(m.group(0)), text)
    return text, count


# --- rendering --------------------------------------------------------------------------------------------


def prompt_version(max_summary_tokens: int | None = None) -> str:
    """The name of the rendered template: the authors' (`PROMPT_VERSION`), or it plus the length limit."""
    return PROMPT_VERSION if max_summary_tokens is None else f"{PROMPT_VERSION}+max-summary-tokens-{max_summary_tokens}"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """What the model gets for one update."""

    messages: tuple[ChatMessage, ...]  # the chat messages (system, user)
    text: str  # the final prompt after the chat template
    triples: int  # how many triples the prompt holds
    neutralised: int  # how many chat tokens or markers in untrusted text were made inert
    prompt_version: str = PROMPT_VERSION


def triples_of(evidence: Iterable[Evidence]) -> list[Triple]:
    """The triples of a batch, in fold order (events in order, each event's triples in order)."""
    return [t for ev in evidence for t in ev.triples]


def _triple_block(idx: int, query: str, chosen: str, rejected: str) -> str:
    stars = "*" * 5
    return (
        f"=====Triple {idx}=====\n\n*QUERY:*\n {query}\n{stars}\n*CHOSEN ITEM BY THE USER:*\n{chosen}\n{stars}\n"
        f"*REJECTED ITEM BY THE USER:*\n{rejected}"
    )


def build_messages(
    previous_summary: str | None, triples: Sequence[Triple], *, max_summary_tokens: int | None = None
) -> tuple[tuple[ChatMessage, ...], int]:
    """The system and user messages for one update, and the number of neutralisations.

    An empty previous summary counts as none (a stored summary is never empty). `max_summary_tokens`
    adds one sentence asking for a summary of at most that many tokens.
    """
    neutralised = 0

    def clean(s: str) -> str:
        nonlocal neutralised
        out, n = neutralise(s)
        neutralised += n
        return out

    blocks = "\n\n".join(
        _triple_block(i + 1, clean(t.query), clean(t.chosen), clean(t.rejected)) for i, t in enumerate(triples)
    )
    past = clean(previous_summary) if previous_summary else NOT_PROVIDED
    closing = _CLOSING
    if max_summary_tokens is not None:
        closing += _LENGTH_LIMIT.format(n=max_summary_tokens, words=max(1, max_summary_tokens * 3 // 4))
    user = (
        f"{_INSTRUCTION}\n=====Past Preference Summary=====\n\n{past}\n\n=====Interaction History=====\n{blocks}"
        f"\n\n=====END=====\n\n{closing}"
    )
    # The authors strip the user message (a no-op for this template; kept for byte fidelity).
    return (ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", user.strip())), neutralised


def render_chat(messages: Sequence[ChatMessage]) -> str:
    """Qwen3's chat template for plain system/user messages, generation prompt added, thinking on."""
    parts = [f"{IM_START}{m.role}\n{m.content}{IM_END}\n" for m in messages]
    parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


def render(
    previous_summary: str | None, evidence: Iterable[Evidence], *, max_summary_tokens: int | None = None
) -> RenderedPrompt:
    """Render the update prompt for a previous summary (or none) and a batch of evidence."""
    triples = triples_of(evidence)
    messages, neutralised = build_messages(previous_summary, triples, max_summary_tokens=max_summary_tokens)
    return RenderedPrompt(
        messages=messages,
        text=render_chat(messages),
        triples=len(triples),
        neutralised=neutralised,
        prompt_version=prompt_version(max_summary_tokens),
    )
