"""Fixtures of the models tests: the tiny local model (built once, cached)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny Qwen3-architecture model directory (config + tokenizer; dummy weights)."""
    from models.tiny import ensure_tiny_model

    return ensure_tiny_model()
