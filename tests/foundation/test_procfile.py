"""The Procfile runs under honcho: a broker and a worker that answers its health check, and the optional
model line (vLLM's OpenAI server with the tiny model on CPU) that a worker uses through the `openai` backend."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefstream.kafka import local

ROOT = Path(__file__).parents[2]
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="the Procfile starts its own broker"),
]
READY_TIMEOUT_S = 240.0
MODEL_READY_TIMEOUT_S = 480.0  # builds the tiny model once, then vLLM starts its engine (30 to 60 s here)


def honcho_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{local.free_port()}",
        "PREFSTREAM_DATA_DIR": str(tmp_path),
        "PREFSTREAM_WEB_PORT": str(local.free_port()),
        "PREFSTREAM_PARTITIONS": "1",
        "PREFSTREAM_LOG_FORMAT": "console",
        **extra,
    }


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except OSError:
        return 0, ""


@contextlib.contextmanager
def honcho(env: dict[str, str], *processes: str) -> Iterator[subprocess.Popen[bytes]]:
    """`honcho start PROCESSES`; SIGTERM to the whole group afterwards, then the broker must be gone."""
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/honcho"), "start", *processes], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output = ""
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=120)[0].decode(errors="replace")
        data = Path(env["PREFSTREAM_DATA_DIR"]) / "kafka"
        assert local.LocalCluster.load(data) is None, output[-3000:]


def wait_until(proc: subprocess.Popen[bytes], timeout: float, what: str, check: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)  # other processes: nothing to await but their ports
    raise AssertionError(f"{what} (honcho exited: {proc.poll()})")


def test_procfile_starts_kafka_and_a_ready_worker(tmp_path: Path) -> None:
    """`honcho start kafka worker` brings up the local broker and an extractive worker; SIGTERM stops both."""
    env = honcho_env(tmp_path)
    web = f"http://127.0.0.1:{env['PREFSTREAM_WEB_PORT']}"
    with honcho(env, "kafka", "worker") as proc:
        wait_until(proc, READY_TIMEOUT_S, "worker never became ready under honcho", lambda: get(web + "/readyz")[0] == 200)
        assert local.LocalCluster.load(tmp_path / "kafka") is not None


def counter(text: str, name: str) -> float:
    """A metric summed over its labels, from Prometheus text."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.MULTILINE))


@pytest.mark.engine
@pytest.mark.timeout(900)
def test_procfile_model_line_serves_a_worker_through_the_openai_backend(tmp_path: Path) -> None:
    """`honcho start kafka model worker-openai`: the worker becomes ready against the served tiny model, and an
    event makes it call the model (the server counts the prompt tokens, the worker the model call)."""
    from tests.streams.harness import Producer, event

    model_port = local.free_port()
    env = honcho_env(tmp_path, PREFSTREAM_MODEL_PORT=str(model_port), PREFSTREAM_FLUSH_MIN_EVENTS="1",
                     PREFSTREAM_FLUSH_IDLE_S="0.5")  # fmt: skip
    web, model = f"http://127.0.0.1:{env['PREFSTREAM_WEB_PORT']}", f"http://127.0.0.1:{model_port}"
    with honcho(env, "kafka", "model", "worker-openai") as proc:
        wait_until(proc, MODEL_READY_TIMEOUT_S, "the openai worker never became ready",
                   lambda: get(web + "/readyz")[0] == 200)  # fmt: skip
        producer = Producer(env["KAFKA_BOOTSTRAP_SERVERS"], "prefstream.events", 1)
        try:
            producer.send(event("procfile-user", "procfile-e1"))
            producer.flush()
        finally:
            producer.close()
        wait_until(proc, 120, "the worker never called the served model",
                   lambda: counter(get(model + "/metrics")[1], "vllm:prompt_tokens_total") > 0
                   and counter(get(web + "/metrics")[1], "prefstream_model_latency_seconds_count") > 0)  # fmt: skip
