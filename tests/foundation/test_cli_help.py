"""What a person at a terminal sees first: the help texts and `prefstream settings` (issue #9)."""

from __future__ import annotations

import subprocess
import sys

from prefstream.cli import COMMANDS, GROUPS


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "PREFSTREAM_LOG_FORMAT": "console"}
    return subprocess.run([sys.executable, "-m", "prefstream.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=120)  # fmt: skip


def test_top_level_help_lists_every_command_with_its_description_and_exit_codes() -> None:
    """`prefstream --help` says what prefstream is, lists each command with its help, and documents exit codes."""
    out = " ".join(_run("--help").stdout.split())  # argparse wraps lines
    assert "plain-language preference profiles" in out
    for name, (_, help_text) in COMMANDS.items():
        word = name.split()[0]
        described = GROUPS.get(word, help_text)
        assert f"{word} {described}" in out, name
    assert "exit codes: 0 done 1 the command ran and found a problem" in out


def test_every_subcommand_help_has_a_description() -> None:
    """`prefstream X --help` (groups and leaves) starts with the command's description."""
    for name, (_, help_text) in COMMANDS.items():
        out = " ".join(_run(*name.split(), "--help").stdout.split())
        assert help_text in out, name
    for group, text in GROUPS.items():
        assert text in " ".join(_run(group, "--help").stdout.split()), group


def test_settings_prints_sections_and_masks_secrets() -> None:
    """`prefstream settings` prints one short line per setting under its section; a set secret shows as ***."""
    done = _run("settings", env={"PREFSTREAM_OPENAI_API_KEY": "sk-do-not-print", "KAFKA_BOOTSTRAP_SERVERS": "k:9"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "sk-do-not-print" not in done.stdout
    assert any(line.split() == ["PREFSTREAM_OPENAI_API_KEY", "***", "(from", "the", "environment)"] for line in lines)
    assert any(line.split() == ["PREFSTREAM_KAFKA_SASL_PASSWORD", "(unset)"] for line in lines)
    assert any(line.split()[:2] == ["KAFKA_BOOTSTRAP_SERVERS", "k:9"] for line in lines)
    from prefstream.settings import _sections

    assert [line.split()[0] for line in lines if line.startswith("[")] == [f"[{name}]" for name, _ in _sections()]
    assert max(len(line) for line in lines) < 160
