"""Smoke test of the benchmarks: the cheapest one runs end to end at its smoke size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.kafka
def test_scale_out_quick_writes_figures_and_ratio(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`bench/scale_out.py --quick` ends with a sane RATIO line and writes its JSON and plot."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale_out.py"), "--quick", "--results", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    name, value = last.split()[1:]
    assert last.startswith("RATIO ") and name == "scale_out", last
    report = json.loads((tmp_path / "scale_out" / "scale_out.json").read_text())
    assert float(value) == pytest.approx(report["ratio"], abs=1e-3)
    assert 0.3 < report["ratio"] < 4, report  # two workers on one machine: neither a collapse nor magic
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    for runs in report["runs"].values():
        assert all(r["events"] == 256 and r["events_per_update"] == 4.0 for r in runs), runs
    assert (tmp_path / "scale_out" / "scale_out.png").stat().st_size > 1000
