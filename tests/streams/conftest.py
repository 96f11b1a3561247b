"""Fixtures shared by the stream tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.streams.harness import OPEN_CLIENTS, Worker


@pytest.fixture(autouse=True)
def close_kafka_clients() -> Iterator[None]:
    """Close every producer and reader a test opened through the harness."""
    yield
    while OPEN_CLIENTS:
        with contextlib.suppress(Exception):
            OPEN_CLIENTS.pop().close()


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    """One ready worker started with the module's `env` fixture; stopped (SIGTERM) afterwards."""
    w = Worker(env, "a", tmp_path).start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()
