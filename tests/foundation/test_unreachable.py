"""An unreachable broker stops the command-line tools and the worker within seconds, in one line (issue #9)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefstream.errors import KafkaConnectError
from prefstream.kafka.security import probe
from prefstream.settings import KafkaSettings


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_probe_names_each_address_and_its_cause() -> None:
    """The error names every bootstrap address with why it failed and what to check."""
    port = _closed_port()
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port},no-such-host.invalid:9092", connect_timeout_s=2.0)
    with pytest.raises(KafkaConnectError) as caught:
        probe(kafka)
    message = str(caught.value)
    assert f"127.0.0.1:{port}: connection refused" in message
    assert "no-such-host.invalid:9092: unknown host" in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message


def test_probe_passes_when_one_address_listens() -> None:
    """One listening address is enough: the client library tries the others itself."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{_closed_port()},127.0.0.1:{server.getsockname()[1]}")
        probe(kafka)


@pytest.mark.parametrize("command", [["topics", "ensure"], ["worker"]])
def test_unreachable_broker_is_one_line_within_seconds(command: list[str], tmp_path: Path) -> None:
    """`topics ensure` and `worker` exit 2 with one line naming the address, well before kafka-python's 30 s."""
    address = f"127.0.0.1:{_closed_port()}"
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": address, "PREFSTREAM_MODEL_BACKEND": "extractive",
           "PREFSTREAM_DATA_DIR": str(tmp_path), "PREFSTREAM_LOG_FORMAT": "console"}  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "prefstream.cli", *command], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot reach Kafka at {address}" in lines[0] and "connection refused" in lines[0]
    assert took < 20, f"took {took:.1f}s"
