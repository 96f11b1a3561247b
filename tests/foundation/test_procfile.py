"""The Procfile runs under honcho: a broker and a worker that answers its health check."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from prefstream.kafka import local

ROOT = Path(__file__).parents[2]
pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="the Procfile starts its own broker")
def test_procfile_starts_kafka_and_a_ready_worker(tmp_path: Path) -> None:
    """`honcho start` brings up the local broker and an extractive worker; SIGTERM stops both."""
    kafka_port, web_port = local.free_port(), local.free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "PREFSTREAM_DATA_DIR": str(tmp_path),
        "PREFSTREAM_WEB_PORT": str(web_port),
        "PREFSTREAM_PARTITIONS": "1",
        "PREFSTREAM_LOG_FORMAT": "console",
    }
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/honcho"), "start"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        ready = False
        while time.monotonic() < deadline and proc.poll() is None and not ready:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/readyz", timeout=2) as resp:
                    ready = resp.status == 200
            time.sleep(0.5)
        assert ready, "worker never became ready under honcho"
        assert local.LocalCluster.load(tmp_path / "kafka") is not None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=120)[0].decode(errors="replace")
    assert local.LocalCluster.load(tmp_path / "kafka") is None, output[-3000:]
