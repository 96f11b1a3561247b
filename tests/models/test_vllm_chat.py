"""The vllm chat backend's prompt: the model's own chat template, thinking off, without starting an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefstream.models.backends.vllm_chat import VllmChat
from prefstream.models.chat import ChatRequest
from prefstream.models.prompt import ChatMessage


class EngineWithOnlyATokenizer:
    """A test double of an AsyncLLM that only hands out the model's tokenizer (what `render` needs)."""

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(str(model_dir))

    def get_tokenizer(self) -> object:
        return self._tok


@pytest.mark.parametrize(("thinking", "tail"), [(False, "<|im_start|>assistant\n<think>\n\n</think>\n\n"),
                                                (True, "<|im_start|>assistant\n")])
async def test_render_applies_the_chat_template_with_thinking_as_asked(tiny_model_dir: Path, thinking: bool,
                                                                       tail: str) -> None:
    """Qwen3's template with enable_thinking=False pre-fills an empty think block; with thinking on it does not."""
    engine = EngineWithOnlyATokenizer(tiny_model_dir)
    chat = VllmChat(engine=engine, seeded=False)  # type: ignore[arg-type]
    await chat.start()
    request = ChatRequest(request_id="r", messages=(ChatMessage("system", "Generate a task-specific response."),
                                                    ChatMessage("user", "Which item?")), max_tokens=16,
                          thinking=thinking)
    text = engine.get_tokenizer().decode(chat.render(request))  # type: ignore[attr-defined]
    assert text.startswith("<|im_start|>system\nGenerate a task-specific response.<|im_end|>\n"
                           "<|im_start|>user\nWhich item?<|im_end|>\n")
    assert text.endswith(tail)
    await chat.aclose()  # an attached engine is not shut down


def test_exactly_one_of_engine_or_settings() -> None:
    """A chat backend either attaches to an engine or owns one, never both or neither."""
    with pytest.raises(ValueError, match="exactly one"):
        VllmChat()
