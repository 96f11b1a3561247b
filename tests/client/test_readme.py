"""The README's "From your service" examples, executed as written against a real broker and worker.

Each fenced `python` block of that section runs as its own script, in order, in the test's environment
(unique topics, the worker's web port): the examples read their configuration from it as a service would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.streams.harness import ROOT, Worker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BLOCK_TIMEOUT_S = 120


def readme_blocks(section: str = "From your service") -> list[str]:
    """The fenced python blocks of one README section, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_section_has_the_promised_examples() -> None:
    """The section shows the sync and async producers, both readers, the read API, tenants and the downstream prompt."""
    joined = "\n".join(readme_blocks())
    for name in ("Producer.from_env", "AsyncProducer.from_env", "ProfileReader.from_env", "AsyncProfileReader",
                 "ProfileApi", 'tenant="shop"', "render_preference", "selection_messages"):  # fmt: skip
        assert name in joined, name


@pytest.mark.timeout(600)
def test_readme_examples_run(env: dict[str, str], worker: Worker, tmp_path: Path) -> None:
    """Every example runs to completion and prints what the README says it prints."""
    run_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run_env.update(env, PREFSTREAM_WEB_PORT=str(worker.port))
    outputs = []
    for i, block in enumerate(readme_blocks()):
        script = tmp_path / f"example_{i}.py"
        script.write_text(block)
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=run_env,
                              cwd=tmp_path, timeout=BLOCK_TIMEOUT_S)  # fmt: skip
        assert done.returncode == 0, f"example {i} failed:\n{block}\n{done.stdout}\n{done.stderr}\n{worker.tail()}"
        outputs.append(done.stdout)
    sync, async_, reader, async_reader, tenants, prompt = outputs
    assert "Delivered(event_id='chat-77-answer', topic='" in sync
    assert "out_of_range at $.score: expected a score between 0 and scale (5)" in sync
    assert re.fullmatch(r"\d+ \d+", async_.strip())
    assert "changed: u-42" in reader and re.search(r"^1 \d+ \d+ ", reader, flags=re.MULTILINE)
    assert async_reader.strip().splitlines()[-1].isdigit()  # the read API's version of u-42's profile
    assert tenants.splitlines() == ["order-1 read-1", "news True"]  # u-7 of shop, of news, and none without a tenant
    assert "Recommend one book for this user.\n\n<Preference>\n" in prompt and "</Preference>\n\n<Item A>" in prompt
