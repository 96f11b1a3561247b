"""faust-streaming's recovery seeking a changelog partition to `None` after a rebalance lands between two of
its steps (the standby cold-start crash): the deterministic reproduction, with and without the fix.

The reproduction (`tests/streams/faust_recovery_repro.py`) replays the interleaving on a plain faust app
against the real broker; docs/reliability.md explains it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prefstream.streams.errors import IncompatibleLibraryError
from tests.streams.faust_recovery_repro import PARTITIONS, changelog_topic

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120


@pytest.fixture
def reproduce(
    kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: Callable[[str], str]
) -> Iterator[Callable[..., dict[str, Any]]]:
    groups: list[str] = []

    def run(*flags: str) -> dict[str, Any]:
        group = unique_name("recovery-repro")
        groups.append(group)
        source = kafka_topics(unique_name("source"), PARTITIONS)
        kafka_topics(changelog_topic(group), PARTITIONS)
        done = subprocess.run(
            [sys.executable, "-m", "tests.streams.faust_recovery_repro", kafka_bootstrap, source, group, *flags],
            cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
        )  # fmt: skip
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert done.returncode == 0 and lines, f"reproduction failed (rc {done.returncode}):\n{done.stderr[-3000:]}"
        result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
        assert result["steps"] == ["rebalance"], f"the interleaving was not replayed: {result}"
        return result

    yield run
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:  # faust's own internal topics (the changelog is the kafka_topics fixture's)
        leftovers = [t for t in admin.list_topics() if any(t.startswith(g) for g in groups) and t not in
                     {changelog_topic(g) for g in groups}]  # fmt: skip
        if leftovers:
            admin.delete_topics(leftovers)
    finally:
        admin.close()


@pytest.mark.kafka
def test_with_the_fix_recovery_starts_over_instead_of_seeking_to_none(reproduce: Callable[..., dict[str, Any]]) -> None:
    """With `streams.faust_fixes` installed, recovery seeks nothing with the newer rebalance's unbuilt offsets:
    it starts over, seeks the new standby partition to a real offset, and completes without crashing."""
    result = reproduce("--patched")
    assert result["bad_seeks"] == [] and result["crashed"] is None, result
    assert result["completed"], result
    assert any(p == 1 and isinstance(o, int) and o >= 0 for p, o in result["seeks_after"]), result


@pytest.mark.kafka
def test_the_unfixed_library_seeks_a_changelog_partition_to_none(reproduce: Callable[..., dict[str, Any]]) -> None:
    """Without the fix, faust seeks the partition that became a standby to `None` (aiokafka raises the
    benchmark's `ValueError`). When an upgrade fixes it upstream this test skips, saying the fix can go."""
    result = reproduce()
    if not result["bad_seeks"]:
        pytest.skip(f"faust no longer seeks to None ({result}); seek_current_generation can go")
    assert [seek[1:] for seek in result["bad_seeks"]] == [[1, None]], result


def test_install_refuses_a_changed_seek_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """`install()` raises `IncompatibleLibraryError` when `Recovery._seek_offsets` no longer has the shape the
    fix relies on, and marks the method it wraps otherwise."""
    from faust.tables.recovery import Recovery

    from prefstream.streams import faust_fixes

    faust_fixes.install()
    assert faust_fixes.installed() and getattr(Recovery._seek_offsets, "_prefstream_fixed", False)

    async def _seek_offsets(self: Any, consumer: Any, offsets: Any) -> None: ...

    monkeypatch.setattr(Recovery, "_seek_offsets", _seek_offsets)
    with pytest.raises(IncompatibleLibraryError, match="_seek_offsets"):
        faust_fixes.install()
