"""Fixtures of the client tests: an isolated environment whose topics are deleted afterwards, a worker, topics."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.client.cleanup import delete_topics_of
from tests.streams.harness import CI_WORKER_ENV, OPEN_CLIENTS, ROOT, Worker

#: How long a CLI command run by a test may take.
CLI_TIMEOUT_S = 90


@pytest.fixture
def env(test_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The test's environment (unique topics and app id, the ledger backend); its topics are deleted afterwards."""
    yield {**test_env, **CI_WORKER_ENV, "PREFSTREAM_LOG_FORMAT": "console"}
    while OPEN_CLIENTS:
        with contextlib.suppress(Exception):
            OPEN_CLIENTS.pop().close()
    delete_topics_of(test_env)


@pytest.fixture
def topics(env: dict[str, str]) -> dict[str, str]:
    """The environment, with its public topics created as `prefstream topics ensure` makes them."""
    from prefstream.settings import Settings
    from prefstream.topics import ensure_topics

    ensure_topics(Settings.from_env(env))
    return env


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    """One ready `prefstream worker` (ledger backend) on the test's topics; stopped (SIGTERM) afterwards."""
    w = Worker(env, "a", tmp_path).start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


@pytest.fixture
def cli(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `prefstream ARGS...` as a person would, in the test's environment (extra env as keywords)."""

    def run(*args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, **env, "PYTHONPATH": str(ROOT), **extra}
        return subprocess.run([sys.executable, "-m", "prefstream.cli", *args], input=stdin, capture_output=True,
                              text=True, env=full, cwd=ROOT, timeout=CLI_TIMEOUT_S)  # fmt: skip

    return run
