"""Token counting and prompt encoding with the model's own tokenizer, without torch or vLLM.

The stream's flush policy asks how many tokens an update would take many times per batch, so this uses
the `tokenizers` library directly on the model's `tokenizer.json` (the same Rust tokenizer transformers'
fast tokenizer and vLLM wrap). The LLM backends also send the ids encoded here to the engine, so the
count the stream sized its batch with is exactly what the model gets.

Special tokens can only come from the chat frame: `models.prompt` neutralises untrusted text, no added
token contains a newline or a space while untrusted text is always bordered by them in the template (so
no token can straddle a border), and `encode()` checks every prompt: the number of added-token ids must
equal the frame's. At load, every added token of the tokenizer must be one the neutraliser covers, so a
model with other special tokens is refused instead of being silently exposed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prefstream.models import prompt as P
from prefstream.models.errors import OverBudgetError, PromptError
from prefstream.schemas.evidence import Evidence

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def tokenizer_file(path: Path) -> Path:
    """`path` itself if it is a tokenizer.json, else `path/tokenizer.json`."""
    path = Path(path).expanduser()
    candidate = path if path.is_file() else path / "tokenizer.json"
    if not candidate.is_file():
        raise PromptError(
            f"no tokenizer.json at {path}: set PREFSTREAM_TOKENIZER to the model's directory or tokenizer.json"
        )
    return candidate


class PromptTokenizer:
    """Renders and encodes update prompts; counts their tokens."""

    def __init__(self, path: Path, *, max_summary_tokens: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.max_summary_tokens = max_summary_tokens  # rendered into every prompt this tokenizer counts
        self.path = tokenizer_file(path)
        self._tok: Tokenizer = Tokenizer.from_file(str(self.path))
        added = self._tok.get_added_tokens_decoder()
        self.added_ids: frozenset[int] = frozenset(added)
        self.special_ids: frozenset[int] = frozenset(i for i, t in added.items() if t.special)
        uncovered = sorted(t.content for t in added.values() if P.neutralise(t.content)[1] == 0)
        if uncovered:
            raise PromptError(
                f"tokenizer {self.path} has added tokens the prompt neutraliser does not cover: {uncovered}; "
                "user text containing them could become special tokens"
            )
        # The frame's added tokens (im_start x3, im_end x2) do not depend on the number of triples.
        frame = P.render(None, ())
        self._frame_added = self._added_counts(self._tok.encode(frame.text, add_special_tokens=False).ids)

    def _added_counts(self, ids: Iterable[int]) -> Counter[int]:
        added = self.added_ids
        return Counter(i for i in ids if i in added)

    def encode_text(self, text: str) -> list[int]:
        """Plain encoding (no checks): for tests and the benchmark."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode(self, rendered: P.RenderedPrompt) -> list[int]:
        """Token ids of a rendered prompt; raises PromptError if a special token did not come from the frame."""
        ids = self._tok.encode(rendered.text, add_special_tokens=False).ids
        if self._added_counts(ids) != self._frame_added:
            # Unreachable while neutralise() covers the tokenizer (checked at load): a bug, not bad input.
            raise PromptError("a special token in the prompt did not come from the chat frame")
        return list(ids)

    def count_prompt_tokens(self, previous_summary: str | None, evidence: tuple[Evidence, ...]) -> int:
        return len(self.encode(P.render(previous_summary, evidence, max_summary_tokens=self.max_summary_tokens)))

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a plain text (a summary), without the chat frame."""
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int], *, skip_special_tokens: bool = False) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=skip_special_tokens))


def check_budget(tokens: int, budget: int) -> None:
    """The model stage never drops evidence: a prompt over the budget is an error."""
    if tokens > budget:
        raise OverBudgetError(tokens, budget)
