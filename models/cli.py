"""`prefstream prompt`: show exactly what the model would get for a file of events.

    prefstream prompt [--previous-summary TEXT] [--rendered] [--tokenizer PATH] EVENTS.jsonl

Each line of EVENTS.jsonl is one event as apps publish it (see docs/schemas.md); all must be one user's.
They are decoded and turned into evidence exactly as the worker does, then rendered into the update
prompt. Output: one JSON object with the chat messages, the prompt version, counts and the token count
(with the model's tokenizer: --tokenizer, else PREFSTREAM_TOKENIZER, else PREFSTREAM_MODEL if it is a
directory). `--rendered` prints the final prompt string after the chat template instead. Neither vLLM
nor torch is imported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from prefstream.models import prompt as P
from prefstream.models.errors import PromptError
from prefstream.errors import ConfigError
from prefstream.settings import Settings


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("events", metavar="EVENTS.jsonl", help="events of one user, one JSON per line ('-': stdin)")
    parser.add_argument("--previous-summary", metavar="TEXT", default=None, help="the summary to fold into")
    parser.add_argument(
        "--rendered", action="store_true", help="print the final prompt string (after the chat template)"
    )
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json or model directory")


def _read_lines(path: str) -> list[tuple[int, bytes]]:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    return [(n, line) for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]


def _tokenizer_path(args: argparse.Namespace, settings: Settings) -> Path | None:
    if args.tokenizer is not None:
        return Path(args.tokenizer)
    if settings.model.tokenizer is not None:
        return settings.model.tokenizer
    model = Path(settings.model.model).expanduser()
    return model if model.is_dir() else None


def run(args: argparse.Namespace) -> int:
    from prefstream.schemas.decode import decode_event
    from prefstream.schemas.errors import EventRejected
    from prefstream.schemas.evidence import to_evidence

    settings = Settings.from_env()
    evidence = []
    users: set[str] = set()
    for line_no, line in _read_lines(args.events):
        try:
            event = decode_event(None, line, settings.limits)
        except EventRejected as exc:
            raise ConfigError(f"{args.events}:{line_no}: event rejected: {exc}") from None
        users.add(event.user_id)
        evidence.append(to_evidence(event))
    if len(users) > 1:
        raise ConfigError(f"{args.events}: events of {len(users)} users; an update is for one user")

    rendered = P.render(args.previous_summary, evidence, max_summary_tokens=settings.model.max_summary_tokens)
    if args.rendered:
        sys.stdout.write(rendered.text)
        return 0

    tokens: int | None = None
    tokenizer = _tokenizer_path(args, settings)
    if tokenizer is not None:
        from prefstream.models.tokens import PromptTokenizer

        try:
            tokens = len(PromptTokenizer(tokenizer).encode(rendered))
        except PromptError as exc:
            raise ConfigError(str(exc)) from None
    else:
        print("prefstream prompt: no tokenizer (--tokenizer or PREFSTREAM_TOKENIZER): prompt_tokens is null",
              file=sys.stderr)
    out: dict[str, Any] = {
        "prompt_version": rendered.prompt_version,
        "prompt_source": P.PROMPT_SOURCE,
        "messages": [m.to_dict() for m in rendered.messages],
        "counts": {
            "events": len(evidence),
            "triples": rendered.triples,
            "neutralised": rendered.neutralised,
            "prompt_chars": len(rendered.text),
        },
        "prompt_tokens": tokens,
        "prompt_token_budget": settings.model.prompt_token_budget,
        "tokenizer": str(tokenizer) if tokenizer is not None else None,
    }
    sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
    return 0
