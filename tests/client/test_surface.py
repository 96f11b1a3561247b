"""The client's public surface: a complete, sorted `__all__`, and imports that never pull in the worker's stack."""

from __future__ import annotations

import subprocess
import sys

import prefstream.client as client


def test_all_is_sorted_and_complete() -> None:
    """`prefstream.client.__all__` is sorted and names every public attribute the package exposes."""
    assert client.__all__ == sorted(client.__all__)
    public = {name for name in vars(client) if not name.startswith("_")} - {
        "api", "async_producer", "async_reader", "config", "delivery", "errors", "producer", "prompt", "reader",
        "view", "wire",
    }  # the modules themselves  # fmt: skip
    assert public == set(client.__all__)


def test_client_and_terminal_commands_import_no_worker_stack() -> None:
    """Importing the client and the `produce`, `tail`, `profile` and `doctor` commands loads no faust, vLLM or torch."""
    code = (
        "import sys\n"
        "import prefstream.client, prefstream.produce_cli, prefstream.tail_cli, prefstream.profile_cli, prefstream.doctor\n"
        "print(','.join(m for m in ('torch', 'vllm', 'faust', 'transformers', 'rocksdict') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
