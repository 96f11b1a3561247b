"""`prefstream capacity`: GPUs, workers and partitions for a load, with the arithmetic shown.

    prefstream capacity --events-per-s 2000 --active-users 1000000 [--events-per-update 16]
                        [--gpu-tokens-per-s 3000] [--output-tokens N] [--worker-events-per-s N]
                        [--tokenizer PATH]

The prompt of one update is rendered by the worker's own renderer (`models.prompt.render`) for a sample
user: `--events-per-update` copies of the `pair` example of docs/schemas.md folded into a previous summary
of `--summary-tokens` (default 400); its tokens are counted with the model's tokenizer (`--tokenizer`, else
PREFSTREAM_TOKENIZER), or estimated at `CHARS_PER_TOKEN` without one (said so in the output). The
output tokens of an update default to PREFSTREAM_MAX_TOKENS, the most an update may generate.

GPUs: the updates/s the load needs (events/s / events per update) times output tokens per update, over
what one GPU generates per second (`--gpu-tokens-per-s`, measured with prompts of about the printed
length; the default is the planning figure in docs/capacity.md), at `TARGET_UTILIZATION`. Workers: the
events/s over what one worker ingests (`--worker-events-per-s`, bench/stream_overhead.py), at
`TARGET_UTILIZATION` so that a restarted worker catches up. Partitions: a power of two, at least twice
the workers (the partition count of a topic never changes, and workers scale up to it), and at least 8.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from prefstream.errors import ConfigError
from prefstream.settings import Settings

#: Default output tokens/s of one GPU: Llama-3.1-8B on 1x H100, vLLM V1, 5-10k-token prompts, 2,000 output
#: tokens, concurrency 50-100 (docs/capacity.md, "The GPU figure"); AlignXplore+ (Qwen3-8B) is of that class.
DEFAULT_GPU_TOKENS_PER_S = 3000.0
#: Default events/s one worker ingests with the model out of the way (docs/performance.md, "Stream overhead",
#: after the fix: the median on the shared 2-core development machine; a production node does better).
DEFAULT_WORKER_EVENTS_PER_S = 490.0
#: Plan machines for this share of their measured capacity (the rest absorbs bursts and catch-up).
TARGET_UTILIZATION = 0.7
#: Characters per token when no tokenizer is given (English text with a Qwen-style byte-level BPE).
CHARS_PER_TOKEN = 4.0
MIN_PARTITIONS = 8

#: The sample summary, repeated: one token in a real model's vocabulary (` preference`).
SAMPLE_SUMMARY_WORD = "preference "


@dataclass(frozen=True)
class Plan:
    events_per_s: float
    active_users: int
    events_per_update: int
    prompt_tokens: int
    prompt_counted: str  # how prompt_tokens was obtained
    output_tokens: int
    gpu_tokens_per_s: float
    worker_events_per_s: float
    updates_per_s: float
    gpus: int
    workers: int
    partitions: int


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.description = "GPUs, workers and partitions for a load, with the arithmetic shown."
    parser.add_argument("--events-per-s", type=float, required=True, help="peak events/s into the events topic")
    parser.add_argument("--active-users", type=int, required=True, help="users with state (pending or profile)")
    parser.add_argument("--events-per-update", type=int, default=16,
                        help="events folded per update (coalescing; at most PREFSTREAM_FLUSH_MAX_EVENTS)")  # fmt: skip
    parser.add_argument("--summary-tokens", type=int, default=400, help="length of the previous summary, tokens")
    parser.add_argument("--output-tokens", type=int, default=None,
                        help="generated tokens per update (default PREFSTREAM_MAX_TOKENS, the most allowed)")  # fmt: skip
    parser.add_argument("--gpu-tokens-per-s", type=float, default=DEFAULT_GPU_TOKENS_PER_S,
                        help=f"output tokens/s one GPU sustains (default {DEFAULT_GPU_TOKENS_PER_S:,.0f})")  # fmt: skip
    parser.add_argument("--worker-events-per-s", type=float, default=DEFAULT_WORKER_EVENTS_PER_S,
                        help=f"events/s one worker ingests (default {DEFAULT_WORKER_EVENTS_PER_S:,.0f})")  # fmt: skip
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json or model directory")


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    _validate(args, settings)
    output_tokens = args.output_tokens if args.output_tokens is not None else settings.model.max_tokens
    prompt_tokens, how = sample_prompt_tokens(args.events_per_update, args.summary_tokens,
                                              args.tokenizer or settings.model.tokenizer)  # fmt: skip
    plan = make_plan(args.events_per_s, args.active_users, args.events_per_update, prompt_tokens, how,
                     output_tokens, args.gpu_tokens_per_s, args.worker_events_per_s)  # fmt: skip
    sys.stdout.write(explain(plan))
    return 0


def _validate(args: argparse.Namespace, settings: Settings) -> None:
    for name in ("events_per_s", "gpu_tokens_per_s", "worker_events_per_s"):
        if not getattr(args, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    if args.active_users < 1:
        raise ConfigError(f"--active-users must be at least 1, got {args.active_users}")
    if args.summary_tokens < 0:
        raise ConfigError(f"--summary-tokens must not be negative, got {args.summary_tokens}")
    if args.output_tokens is not None and args.output_tokens < 1:
        raise ConfigError(f"--output-tokens must be at least 1, got {args.output_tokens}")
    most = settings.flush.max_events
    if not 1 <= args.events_per_update <= most:
        raise ConfigError(f"--events-per-update must be between 1 and PREFSTREAM_FLUSH_MAX_EVENTS ({most}), "
                          f"got {args.events_per_update}")  # fmt: skip


def sample_prompt_tokens(events: int, summary_tokens: int, tokenizer: Path | None) -> tuple[int, str]:
    """Tokens of the update prompt of a sample user (the worker's renderer), and how they were counted."""
    from prefstream.models import prompt as P
    from prefstream.models.errors import PromptError
    from prefstream.schemas.evidence import to_evidence
    from prefstream.schemas.examples import EXAMPLES
    from prefstream.schemas.events import Event

    import msgspec

    example = msgspec.json.decode(EXAMPLES["pair"].encode(), type=Event)
    evidence = [to_evidence(msgspec.structs.replace(example, event_id=f"sample-{i}")) for i in range(events)]
    if tokenizer is None:  # the frame and the evidence estimated; the summary is as long as asked
        frame = P.render("x" if summary_tokens else None, evidence).text
        estimate = math.ceil((len(frame) - (1 if summary_tokens else 0)) / CHARS_PER_TOKEN) + summary_tokens
        return estimate, f"estimated at {CHARS_PER_TOKEN:g} characters/token"
    summary = (SAMPLE_SUMMARY_WORD * summary_tokens).strip() or None
    rendered = P.render(summary, evidence)
    from prefstream.models.tokens import PromptTokenizer

    try:
        return len(PromptTokenizer(tokenizer).encode(rendered)), f"counted with {tokenizer}"
    except PromptError as exc:
        raise ConfigError(str(exc)) from None


def make_plan(events_per_s: float, active_users: int, events_per_update: int, prompt_tokens: int, how: str,
              output_tokens: int, gpu_tokens_per_s: float, worker_events_per_s: float) -> Plan:  # fmt: skip
    """The sizing (pure arithmetic; `explain` prints it)."""
    updates = events_per_s / events_per_update
    gpus = math.ceil(updates * output_tokens / (gpu_tokens_per_s * TARGET_UTILIZATION))
    workers = math.ceil(events_per_s / (worker_events_per_s * TARGET_UTILIZATION))
    partitions = max(MIN_PARTITIONS, 1 << math.ceil(math.log2(2 * workers)))
    return Plan(events_per_s, active_users, events_per_update, prompt_tokens, how, output_tokens, gpu_tokens_per_s,
                worker_events_per_s, updates, gpus, workers, partitions)  # fmt: skip


def explain(p: Plan) -> str:
    u = TARGET_UTILIZATION
    out_tps = p.updates_per_s * p.output_tokens
    lines = [
        f"load: {p.events_per_s:,.0f} events/s from {p.active_users:,} active users",
        f"prompt of one update: {p.prompt_tokens:,} tokens ({p.events_per_update} pair events + a previous summary, "
        f"rendered by models/prompt.py; {p.prompt_counted})",
        f"output of one update: {p.output_tokens:,} tokens (reasoning + summary)",
        "",
        f"updates/s    = events/s / events per update = {p.events_per_s:,.0f} / {p.events_per_update} "
        f"= {p.updates_per_s:,.1f}",
        f"output tok/s = updates/s x output tokens = {p.updates_per_s:,.1f} x {p.output_tokens:,} = {out_tps:,.0f}",
        f"prompt tok/s = updates/s x prompt tokens = {p.updates_per_s:,.1f} x {p.prompt_tokens:,} "
        f"= {p.updates_per_s * p.prompt_tokens:,.0f}",
        f"GPUs         = ceil(output tok/s / (GPU tok/s x {u:g})) = ceil({out_tps:,.0f} / ({p.gpu_tokens_per_s:,.0f} x {u:g}))"
        f" = {p.gpus}",
        f"workers      = ceil(events/s / (worker events/s x {u:g})) = ceil({p.events_per_s:,.0f} / "
        f"({p.worker_events_per_s:,.0f} x {u:g})) = {p.workers}",
        f"partitions   = max({MIN_PARTITIONS}, next power of two >= 2 x workers) = {p.partitions} "
        f"({p.active_users / p.partitions:,.0f} users per partition)",
        "",
        f"GPUs {p.gpus}  workers {p.workers}  partitions {p.partitions}",
        f"(GPU tok/s must be measured with prompts of about {p.prompt_tokens:,} tokens and outputs of "
        f"{p.output_tokens:,}: docs/capacity.md)",
    ]
    return "\n".join(lines) + "\n"
