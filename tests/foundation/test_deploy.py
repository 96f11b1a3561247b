"""Operators' artefacts refer to things that exist: metrics in the dashboard, commands in manifests."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_dashboard_queries_only_metrics_the_worker_exports() -> None:
    """Every metric name in the Grafana dashboard is registered by streams.metrics."""
    from prefstream.streams.metrics import StreamMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {
        family.name + suffix
        for family in StreamMetrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    dashboard = json.loads((ROOT / "deploy/k8s/base/dashboards/prefstream.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"prefstream_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard has no queries"
    missing = sorted(n for n in used if n not in exported)
    assert not missing, f"dashboard uses metrics the worker does not export: {missing}"


def test_procfile_names_a_backend_for_every_worker() -> None:
    """Each worker line of the Procfile names its model backend explicitly."""
    lines = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln and not ln.startswith("#")]
    assert {ln.split(":", 1)[0] for ln in lines} >= {"kafka", "worker", "model", "worker-openai"}
    for line in lines:
        if " worker" in line:
            assert "PREFSTREAM_MODEL_BACKEND=" in line, line
