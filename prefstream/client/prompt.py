"""A profile in a downstream LLM prompt, exactly as the AlignXplore+ authors feed a summary to their models.

The authors' downstream prompt (the pairwise choice they evaluate and reward with; `eval/evaluate_select.py`,
`eval/evaluate_rec_pair.py` and `verl/utils/reward_score/confidence_upi_streaming.py` of AlignXplorePlus, all
the same) puts the summary between `<Preference>` tags, a newline after the opening tag and none before the
closing one, in a user message after a one-line system message; the downstream model runs without thinking.
`render_preference` gives that block for any prompt of yours; `selection_messages` gives the authors' whole
pairwise prompt, the one their reported accuracies come from.
"""

from __future__ import annotations

from typing import Final

from prefstream.schemas.profiles import Profile

__all__ = ["NOT_PROVIDED", "SELECTION_SYSTEM", "render_preference", "selection_messages"]

#: The authors' placeholder for "no summary yet" (the update prompt's past summary): a user without a
#: profile renders as this rather than as an empty block.
NOT_PROVIDED: Final = "Not Provided."
#: The system message of the authors' downstream prompt.
SELECTION_SYSTEM: Final = "Generate a task-specific response."


def render_preference(profile: Profile | str | None) -> str:
    """`<Preference>\\n{summary}</Preference>`: the block a downstream prompt takes (None: no profile yet)."""
    summary = profile.summary if isinstance(profile, Profile) else profile
    return f"<Preference>\n{summary or NOT_PROVIDED}</Preference>"


def selection_messages(profile: Profile | str | None, query: str, item_a: str, item_b: str) -> list[dict[str, str]]:
    """The authors' pairwise prompt: which of two items this user prefers, answered as `{"selection": "Item A"}`.

    Render it with the downstream model's chat template without thinking (Qwen3: `enable_thinking=False`);
    the authors generate at most 16 tokens and parse the JSON object. Put the candidates in random order.
    """
    user = (
        "Determine which response the user prefers based on the user's preferences. "
        "Please output your selection below in a json format by filling in the placeholders in []:"
        '{"selection": "[Item A / Item B]"}\n'
        f"<Prompt>\n{query}\n</Prompt>\n\n"
        f"{render_preference(profile)}\n\n"
        f"<Item A>\n{item_a}\n</Item A>\n\n"
        f"<Item B>\n{item_b}\n</Item B>\n\n"
        "Now, ONLY output your selection without any other text outside of this specified structure."
    )
    return [{"role": "system", "content": SELECTION_SYSTEM}, {"role": "user", "content": user}]
