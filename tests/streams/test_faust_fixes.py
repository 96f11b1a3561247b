"""faust-streaming's lost message in a rebalance: the deterministic reproduction, with and without the fix.

The reproduction (`tests/streams/faust_repro.py`) replays the interleaving of a real rebalance on a
plain faust agent against the real broker; docs/reliability.md explains it step by step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.streams.faust_repro import COUNT, DROP

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120


def reproduce(bootstrap: str, topic: str, *flags: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.streams.faust_repro", bootstrap, topic, f"group-{topic}", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"reproduction failed (rc {done.returncode}):\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    want = ["generation"] if "--generation" in flags else ["revoke", "resume"]
    assert result["steps"] == want, f"the interleaving was not replayed: {result}"
    return result


def test_with_the_fixes_the_abandoned_message_is_delivered_again(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """With `streams.faust_fixes` installed (as the worker does), the partition is rewound to the message the
    rebalance abandoned, so it is delivered again (later, with the ones after it again: at least once) and
    every offset is processed before the group commits past it. Fails if a faust upgrade brings the loss back."""
    result = reproduce(kafka_bootstrap, kafka_topics(unique_name("repro")), "--patched")
    seen = result["seen"]
    assert set(seen) == set(range(COUNT)), f"an offset never reached the agent: {result}"
    assert seen.index(DROP) > seen.index(DROP + 1), f"the interleaving no longer abandons {DROP}: {result}"
    assert result["committed"] == COUNT


def test_the_exact_commit_alone_stops_before_the_abandoned_message(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """The commit fix on its own: the abandoned message is not delivered in this run, but the committed offset
    stays on it, so the partition's next owner (or the seek that ends every rebalance) reads it."""
    result = reproduce(kafka_bootstrap, kafka_topics(unique_name("repro")), "--exact-head-only")
    assert DROP not in result["seen"], "the interleaving no longer abandons a message; re-check the reproduction"
    assert result["committed"] == DROP, f"committed past the unprocessed offset {DROP}: {result}"


def test_the_unfixed_library_loses_the_message(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """Without the fix, faust commits past the abandoned offset: the defect the fix is for. When an
    upgrade fixes it upstream this test skips, saying the workaround can be dropped."""
    result = reproduce(kafka_bootstrap, kafka_topics(unique_name("repro")))
    if result["committed"] <= DROP or DROP in result["seen"]:
        pytest.skip(f"faust no longer loses the message ({result}); streams/faust_fixes.py can go")
    assert sorted(result["seen"]) == [o for o in range(COUNT) if o != DROP]
    assert result["committed"] == COUNT


def test_install_is_idempotent_and_marks_the_method() -> None:
    """`install()` patches once; a second call changes nothing."""
    from faust.transport.consumer import Consumer

    from prefstream.streams import faust_fixes

    faust_fixes.install()
    patched = Consumer._new_offset, Consumer.getmany
    faust_fixes.install()
    assert faust_fixes.installed() and (Consumer._new_offset, Consumer.getmany) == patched


def test_a_batch_fetched_across_a_generation_change_is_not_lost(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """The consumer generation changes while a fetched batch is being handed out: faust's `getmany` drops the
    rest of the batch and the fetcher is already past it, so without a seek those records never arrive. With
    the fix the partition is rewound to the first record not handed out, and every record arrives."""
    unfixed = reproduce(kafka_bootstrap, kafka_topics(unique_name("unfixed")), "--generation")
    fixed = reproduce(kafka_bootstrap, kafka_topics(unique_name("fixed")), "--generation", "--patched")
    assert sorted(set(fixed["seen"])) == list(range(COUNT)), f"records lost with the fix: {fixed}"
    if set(unfixed["seen"]) == set(range(COUNT)):
        pytest.skip(f"faust no longer drops the batch ({unfixed}); the rewind in streams/faust_fixes.py can go")
    assert unfixed["seen"] == list(range(DROP)), unfixed  # the rest of the batch never arrives
