"""The `prefstream` command stays light and validates before it acts."""

from __future__ import annotations

import subprocess
import sys


def test_help_imports_no_engine_or_stream_processor() -> None:
    """`prefstream --help` imports neither torch, vLLM nor faust."""
    code = (
        "import sys\n"
        "from prefstream import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'vllm', 'faust', 'transformers') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY=", out


def test_unknown_command_fails_with_usage() -> None:
    """An unknown subcommand exits 2 with argparse's usage message."""
    done = subprocess.run([sys.executable, "-m", "prefstream.cli", "bogus"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "invalid choice: 'bogus'" in done.stderr


def test_worker_without_backend_refuses_to_start() -> None:
    """The worker names the missing PREFSTREAM_MODEL_BACKEND instead of picking one."""
    env = {"PATH": "/usr/bin:/bin", "PREFSTREAM_LOG_FORMAT": "console"}
    done = subprocess.run(
        [sys.executable, "-m", "prefstream.cli", "worker"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "PREFSTREAM_MODEL_BACKEND is required" in done.stderr
