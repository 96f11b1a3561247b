"""The downstream task: the authors' pairwise selection prompt, and the parsing of its answers. Pure.

Source: `format_prompt` and `parse_model_output` in `eval/evaluate_select.py` (the same prompt is in
`eval/evaluate_rec_pair.py` for the recommendation sets) of github.com/rongtao7/AlignXplorePlus at
commit 52e8c4453716df027f4a9fee66acb7e88bb94926. The user message is kept byte for byte (note the
`\\n` after the JSON placeholder, the blank lines between blocks, and no newline before `</Preference>`);
the system message is "Generate a task-specific response."; the chat template runs with thinking off.
The "direct" baseline (`eval/evaluate_direct_select.py`, `format_profile`) puts the raw history in the
`<Preference>` block instead of a summary; its text is kept too, the authors' "Tripe" typo included.

Answers are `{"selection": "Item A"}` or `{"selection": "Item B"}`. The authors' parser takes the text
after the last `</think>`, tries `json.loads`, then the first `{...}` on a line; anything else is a wrong
answer. Here every answer gets a status so malformed answers are counted, not hidden:

| status     | what the answer was                                                            |
| ---------- | ------------------------------------------------------------------------------ |
| `ok`       | a JSON object whose `selection` names exactly one of the items                 |
| `both`     | `selection` names both items (the placeholder `[Item A / Item B]` echoed back) |
| `neither`  | a JSON object whose `selection` is missing or names no item                    |
| `malformed`| no JSON object at all (empty, cut off, prose, gibberish)                       |

Only `ok` answers can be correct; the others count as wrong, as in the paper, and are reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prefstream.models.prompt import ChatMessage
from prefstream.schemas.evidence import Triple

SOURCE = "github.com/rongtao7/AlignXplorePlus@52e8c4453716df027f4a9fee66acb7e88bb94926:eval/evaluate_select.py"
SYSTEM = "Generate a task-specific response."
#: The paper's downstream generation settings (non-thinking Qwen3-8B): T 0.6, top-p 0.95, top-k 20, 16 tokens.
MAX_NEW_TOKENS = 16

Choice = Literal["A", "B"]
Status = Literal["ok", "both", "neither", "malformed"]
STATUSES: tuple[Status, ...] = ("ok", "both", "neither", "malformed")


def user_message(query: str, preference: str, item_a: str, item_b: str) -> str:
    """The selection prompt's user message, byte for byte as the authors wrote it."""
    return (
        "Determine which response the user prefers based on the user's preferences. "
        "Please output your selection below in a json format by filling in the placeholders in []:"
        '{"selection": "[Item A / Item B]"}\n'
        f"<Prompt>\n{query}\n</Prompt>\n\n"
        f"<Preference>\n{preference}</Preference>\n\n"
        f"<Item A>\n{item_a}\n</Item A>\n\n"
        f"<Item B>\n{item_b}\n</Item B>\n\n"
        "Now, ONLY output your selection without any other text outside of this specified structure."
    )


def raw_history_preference(history: Sequence[Triple]) -> str:
    """The "direct" baseline's `<Preference>` text: the raw triples (authors' `format_profile`, typo kept)."""
    blocks = "\n\n".join(
        f"=====Tripe {i + 1}=====\n\n*QUERY:*\n {t.query}\n{'*' * 5}\n*CHOSEN ITEM BY THE USER:*\n{t.chosen}\n"
        f"{'*' * 5}\n*REJECTED ITEM BY THE USER:*\n{t.rejected}"
        for i, t in enumerate(history)
    )
    return (
        "The user's history will be provided as a sequence of triples, where each triple is "
        "`(QUERY, CHOSEN ITEM BY THE USER, REJECTED ITEM BY THE USER)`.\n\n"
        f"=====Interaction History=====\n{blocks}\n\n=====END====="
    )


@dataclass(frozen=True, slots=True)
class SelectionPrompt:
    """One pairwise question: which of two items the user prefers, given a preference text."""

    query: str
    preference: str
    item_a: str
    item_b: str
    answer: Choice  # where the chosen item was put

    @classmethod
    def build(cls, triple: Triple, preference: str, *, chosen_first: bool) -> SelectionPrompt:
        a, b = (triple.chosen, triple.rejected) if chosen_first else (triple.rejected, triple.chosen)
        return cls(query=triple.query, preference=preference, item_a=a, item_b=b, answer="A" if chosen_first else "B")

    def messages(self) -> tuple[ChatMessage, ...]:
        return (
            ChatMessage("system", SYSTEM),
            ChatMessage("user", user_message(self.query, self.preference, self.item_a, self.item_b)),
        )


@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    status: Status
    choice: Choice | None = None


_ITEM = re.compile(r"\bitem\s*([ab])\b", re.IGNORECASE)
_BARE = re.compile(r"^\W*([ab])\W*$", re.IGNORECASE)
_FINAL_MARKER = "assistantfinal"  # GPT-OSS: the answer follows this marker (the authors' parse_gpt_output)


def _json_objects(text: str) -> list[object]:
    """Every JSON value that starts at a `{` in `text`, in order (a decoder, not a regex: nested braces work)."""
    decoder = json.JSONDecoder()
    found: list[object] = []
    i = text.find("{")
    while i != -1:
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        found.append(value)
        i = text.find("{", end)
    return found


def parse_answer(text: str) -> ParsedAnswer:
    """The status and choice of a downstream answer (see the module docstring for the statuses)."""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if _FINAL_MARKER in text:
        text = text.rsplit(_FINAL_MARKER, 1)[1]
    objects = [o for o in _json_objects(text) if isinstance(o, dict)]
    if not objects:
        return ParsedAnswer("malformed")
    # The first object with a `selection` key decides: an echoed placeholder names both items (`both`).
    obj = next((o for o in objects if "selection" in o), objects[0])
    value = obj.get("selection")
    if not isinstance(value, str):
        return ParsedAnswer("neither")
    named = {m.upper() for m in _ITEM.findall(value)}
    if not named and (bare := _BARE.match(value)):
        named = {bare.group(1).upper()}
    if len(named) == 2:
        return ParsedAnswer("both")
    if len(named) == 1:
        choice: Choice = "A" if "A" in named else "B"
        return ParsedAnswer("ok", choice)
    return ParsedAnswer("neither")
