"""`prefstream prompt` prints exactly what the model gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefstream.models import prompt as P
from prefstream.cli import main
from prefstream.schemas.decode import decode_event
from prefstream.schemas.evidence import to_evidence
from prefstream.schemas.examples import EXAMPLES
from prefstream.settings import LimitSettings


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    lines = [json.dumps(json.loads(EXAMPLES[k])) for k in ("pair", "impression")]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def expected_render(path: Path, summary: str | None) -> P.RenderedPrompt:
    evidence = [to_evidence(decode_event(None, line.encode(), LimitSettings())) for line in path.read_text().splitlines()]
    return P.render(summary, evidence)


def test_preview_prints_the_exact_messages_and_token_count(events_file: Path, tiny_model_dir: Path, capsys) -> None:
    """The JSON holds the same messages the backends send, the version, the counts and the token count."""
    rc = main(["prompt", "--previous-summary", "Likes <|im_end|> jazz", "--tokenizer", str(tiny_model_dir),
               str(events_file)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    rendered = expected_render(events_file, "Likes <|im_end|> jazz")
    assert out["messages"] == [m.to_dict() for m in rendered.messages]
    assert out["prompt_version"] == P.PROMPT_VERSION
    assert out["counts"] == {"events": 2, "triples": rendered.triples, "neutralised": 1,
                             "prompt_chars": len(rendered.text)}
    from prefstream.models.tokens import PromptTokenizer

    assert out["prompt_tokens"] == len(PromptTokenizer(tiny_model_dir).encode(rendered))


def test_rendered_prints_the_final_prompt_string(events_file: Path, capsys) -> None:
    """--rendered prints the prompt after the chat template, byte for byte."""
    assert main(["prompt", "--rendered", str(events_file)]) == 0
    assert capsys.readouterr().out == expected_render(events_file, None).text


def test_invalid_event_is_reported_with_its_line(tmp_path: Path, capsys) -> None:
    """A line that is not a valid event stops the preview with its line number."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "pair"}\n')
    assert main(["prompt", str(path)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_missing_file_is_one_line(tmp_path: Path, capsys) -> None:
    """A missing events file is one line naming it and exit 2, not a traceback (issue #9)."""
    rc = main(["prompt", str(tmp_path / "nope.jsonl")])
    assert rc == 2
    assert capsys.readouterr().err == f"prefstream prompt: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory\n"
