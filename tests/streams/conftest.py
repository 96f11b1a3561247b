"""Fixtures shared by the stream tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.streams.harness import OPEN_CLIENTS


@pytest.fixture(autouse=True)
def close_kafka_clients() -> Iterator[None]:
    """Close every producer and reader a test opened through the harness."""
    yield
    while OPEN_CLIENTS:
        with contextlib.suppress(Exception):
            OPEN_CLIENTS.pop().close()
