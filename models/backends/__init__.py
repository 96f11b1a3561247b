"""Preference-model backends, chosen by `PREFSTREAM_MODEL_BACKEND`; never a silent fallback.

| name         | module                         | what it is                                                   |
| ------------ | ------------------------------ | ------------------------------------------------------------ |
| `vllm`       | `models.backends.vllm_engine`  | AlignXplore+ in an in-process vLLM `AsyncLLM` engine          |
| `openai`     | `models.backends.openai`       | AlignXplore+ served by a `vllm serve` fleet (`/v1/completions`) |
| `extractive` | `models.backends.extractive`   | a deterministic non-LLM **baseline** (demo, no GPU/weights)   |
| `ledger`     | `models.backends.ledger`       | a deterministic **test** backend (streams/reliability tests)  |

Each module is imported only when its backend is chosen, so only the `vllm` backend imports vLLM/torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from prefstream.errors import ConfigError

if TYPE_CHECKING:
    from prefstream.models.interface import PreferenceModel
    from prefstream.settings import Settings

BACKENDS: dict[str, str] = {
    "vllm": "prefstream.models.backends.vllm_engine:VllmBackend",
    "openai": "prefstream.models.backends.openai:OpenAIBackend",
    "extractive": "prefstream.models.backends.extractive:ExtractiveBackend",
    "ledger": "prefstream.models.backends.ledger:LedgerBackend",
}

__all__ = ["BACKENDS", "create_backend"]


def create_backend(settings: Settings) -> PreferenceModel:
    """Build (not start) the backend `PREFSTREAM_MODEL_BACKEND` names. Call `await backend.start()` next."""
    name = settings.model.require_backend()
    if name not in BACKENDS:
        raise ConfigError(f"PREFSTREAM_MODEL_BACKEND={name!r}: expected one of {', '.join(BACKENDS)}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: PreferenceModel = cls.from_settings(settings)
    return backend
