"""The demo tells its story: distinct events per wave, and a user whose profile follows a change of interest (issue #9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefstream.demo import USERS, sample_waves
from prefstream.models.backends.extractive import fold
from prefstream.schemas.decode import decode_event
from prefstream.schemas.evidence import to_evidence
from prefstream.settings import LimitSettings


def _chose(summary: str) -> list[str]:
    lines = summary.splitlines()
    return [line for line in lines[lines.index("Chose:") + 1 : lines.index("Rejected:")]]


def test_every_wave_sends_new_events_for_every_user() -> None:
    """No event repeats across waves, every user gets events in every wave, and each one is valid."""
    waves = sample_waves()
    ids = [e["event_id"] for wave in waves for e in wave]
    assert len(ids) == len(set(ids))
    for wave in waves:
        assert {e["user_id"] for e in wave} == set(USERS)
        for event in wave:
            decode_event(str(event["user_id"]).encode(), json.dumps(event).encode(), LimitSettings())


def test_bobs_profile_moves_from_football_to_cooking() -> None:
    """Folded wave by wave (as the worker's extractive backend does), bob's top choice is the live scores after
    wave 1 and the recipe of the day after wave 3, when the scores are also among his rejections."""
    summary = None
    tops = []
    for wave in sample_waves():
        evidence = [to_evidence(decode_event(None, json.dumps(e).encode(), LimitSettings())) for e in wave
                    if e["user_id"] == "bob"]  # fmt: skip
        summary = fold(summary, evidence, max_items=8)
        tops.append(_chose(summary)[0])
    assert tops[0].startswith("- Title: Live scores") and tops[2].startswith("- Title: Recipe of the day")
    assert "- Title: Live scores (x2)" in summary.split("Rejected:")[1]  # type: ignore[union-attr]


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_prints_each_update_with_the_events_it_folded(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`prefstream demo` on the test broker prints three waves, each profile with the events folded, and exits 0."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PREFSTREAM_LOG_FORMAT": "console",
           "PREFSTREAM_DATA_DIR": str(tmp_path)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "prefstream.cli", "demo", "--timeout", "240"], env=env,
                          capture_output=True, text=True, timeout=290)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("=== wave")] == [
        "=== wave 1", "=== wave 2", "=== wave 3"
    ]
    bob = out.split("bob: profile version")[-1]
    assert "+ saved: Recipe of the day (not Live scores)" in bob
    assert bob.split("Chose:")[1].splitlines()[1].strip() == "- Title: Recipe of the day (x3)"
    assert "dead letter: key=b'mallory' code=missing_field" in out
