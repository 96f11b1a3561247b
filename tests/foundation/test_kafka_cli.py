"""`prefstream kafka up/down/status` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefstream.kafka import local

pytestmark = pytest.mark.kafka


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefstream.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return {**env, "PREFSTREAM_DATA_DIR": str(tmp_path), "PREFSTREAM_LOG_FORMAT": "console", **extra}


def test_up_uses_a_named_running_broker(kafka_bootstrap: str, tmp_path: Path) -> None:
    """With KAFKA_BOOTSTRAP_SERVERS naming a running broker, `kafka up` starts nothing and says so."""
    done = _cli("kafka", "up", env=_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap))
    assert done.returncode == 0, done.stderr
    assert "nothing started" in done.stdout
    assert local.LocalCluster.load(tmp_path / "kafka") is None


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="starts its own broker")
def test_up_twice_reuses_then_down_stops(tmp_path: Path) -> None:
    """`kafka up` starts a broker, a second `up` reuses it, `down` stops it and `status` then says so."""
    env = _env(tmp_path)
    port = str(local.free_port())
    first = _cli("kafka", "up", "--port", port, env=env)
    assert first.returncode == 0, first.stderr
    assert f"started a local Kafka {local.KAFKA_VERSION} at 127.0.0.1:{port}" in first.stdout
    try:
        second = _cli("kafka", "up", "--port", port, env=env)
        assert second.returncode == 0 and "reused the running local Kafka" in second.stdout, second
        assert _cli("kafka", "status", env=env).returncode == 0
    finally:
        down = _cli("kafka", "down", env=env)
    assert down.returncode == 0 and "stopped the local Kafka" in down.stdout
    status = _cli("kafka", "status", env=env)
    assert status.returncode == 1 and "not running; data kept in" in status.stdout


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="starts its own broker")
def test_up_after_down_keeps_data_and_reset_wipes_it(tmp_path: Path) -> None:
    """A second `kafka up` on a stopped broker's data says it kept it; `kafka up --reset` starts afresh."""
    env = _env(tmp_path)
    port = str(local.free_port())
    try:
        assert "(new data in" in _cli("kafka", "up", "--port", port, env=env).stdout
        assert _cli("kafka", "down", env=env).returncode == 0
        again = _cli("kafka", "up", "--port", port, env=env)
        assert again.returncode == 0 and "started a local Kafka" in again.stdout and "(data kept in" in again.stdout
        reset = _cli("kafka", "up", "--port", port, "--reset", env=env)
        assert reset.returncode == 0 and "started a local Kafka" in reset.stdout and "(new data in" in reset.stdout
    finally:
        _cli("kafka", "down", env=env)


def test_status_reports_the_named_broker(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`kafka status` checks the broker KAFKA_BOOTSTRAP_SERVERS names, not only one `kafka up` started (issue #9)."""
    done = _cli("kafka", "status", env=_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"running: the broker at {kafka_bootstrap} (KAFKA_BOOTSTRAP_SERVERS) answers")
    closed = f"127.0.0.1:{local.free_port()}"
    done = _cli("kafka", "status", env=_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=closed))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.strip() == f"not answering: the broker at {closed} (KAFKA_BOOTSTRAP_SERVERS); nothing " \
                                  f"accepted connections at {closed}"  # fmt: skip


def test_wait_names_what_it_waited_for(tmp_path: Path) -> None:
    """`kafka wait` on a closed port ends with one line saying nothing accepted connections, not `last error: None`."""
    closed = f"127.0.0.1:{local.free_port()}"
    done = _cli("kafka", "wait", "--timeout", "1", env=_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=closed))
    assert done.returncode == 2
    assert done.stderr.strip() == f"prefstream kafka wait: Kafka at {closed} not ready after 1s: nothing accepted " \
                                  f"connections at {closed}"  # fmt: skip
