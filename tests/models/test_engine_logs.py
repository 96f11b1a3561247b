"""vLLM's log lines join the worker's JSON log, and an engine that fails to start is named by its root cause
in one line (issue #9). No engine is started: vLLM applies exactly this dictConfig in each of its processes."""

from __future__ import annotations

import os
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prefstream.logs import vllm_logging_config
from prefstream.models.backends.vllm_engine import start_failure

# What a vLLM engine process does with the config: apply it, then log (a worker process first, then the
# engine core that started it, each with its own exception).
CHILD = """
import json, logging, logging.config, sys
logging.config.dictConfig(json.loads(sys.argv[1]))
log = logging.getLogger("vllm.v1.executor.multiproc_executor")
log.info("Resolved architecture: %s", "Qwen3ForCausalLM")
try:
    try:
        raise RuntimeError("Cannot find any model weights with `/models/tiny`")
    except RuntimeError as exc:
        raise ValueError("loading failed") from exc
except ValueError:
    log.exception("WorkerProc failed to start.")
try:
    raise Exception("WorkerProc initialization failed due to an exception in a background process.") from None
except Exception:
    logging.getLogger("vllm.v1.engine.core").exception("EngineCore failed to start.")
"""


def test_vllm_records_are_json_lines_and_the_first_root_cause_is_kept(tmp_path: Path) -> None:
    """Every line vLLM logs through the config is one JSON object; the cause file holds the deepest
    process's innermost exception, not the wrapper the engine core raised afterwards."""
    cause = tmp_path / "root-cause"
    config = json.dumps(vllm_logging_config("json", "info", str(cause)))
    done = subprocess.run([sys.executable, "-c", CHILD, config], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # raises on any plain-text line
    assert [(d["level"], d["event"]) for d in lines] == [
        ("info", "Resolved architecture: Qwen3ForCausalLM"),
        ("error", "WorkerProc failed to start."),
        ("error", "EngineCore failed to start."),
    ]
    assert "RuntimeError: Cannot find any model weights" in lines[1]["exception"]
    assert cause.read_text() == "RuntimeError: Cannot find any model weights with `/models/tiny`\n"


def test_start_failure_names_the_cause_and_the_setting(tmp_path: Path) -> None:
    """The worker's one line carries the root cause and, for a known one, the setting that fixes it."""
    cause = tmp_path / "root-cause"
    cause.write_text("RuntimeError: Cannot find any model weights with `/models/tiny`\n")
    wrapper = RuntimeError("Engine core initialization failed. See root cause above. Failed core proc(s): {}")
    line = start_failure(wrapper, str(cause))
    assert line.startswith("RuntimeError: Cannot find any model weights with `/models/tiny` (no weights")
    assert line.endswith("set PREFSTREAM_VLLM_LOAD_FORMAT=dummy)")
    # No cause written (the failure happened in this process): the exception itself, on one line.
    assert start_failure(ValueError("bad\nvalue"), str(tmp_path / "absent")) == "ValueError: bad value"


def test_vllm_log_routing_is_undone_after_the_engine_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The logging config path reaches vLLM only while the engine starts: a process started later (a `vllm
    serve` from the same shell or test session) must not inherit a path whose directory is gone."""
    from prefstream import logs

    monkeypatch.delenv("VLLM_LOGGING_CONFIG_PATH", raising=False)
    monkeypatch.setenv("VLLM_CONFIGURE_LOGGING", "0")
    with logs.route_vllm_logs(str(tmp_path), str(tmp_path / "cause")):
        assert os.environ["VLLM_LOGGING_CONFIG_PATH"] == str(tmp_path / "vllm-logging.json")
        assert os.environ["VLLM_CONFIGURE_LOGGING"] == "1"
    assert "VLLM_LOGGING_CONFIG_PATH" not in os.environ
    assert os.environ["VLLM_CONFIGURE_LOGGING"] == "0"
