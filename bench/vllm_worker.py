"""`prefstream worker` with the real `vllm` backend and a benchmark double of its *output* only.

The engine, the prompt rendering and encoding, the sampling and the whole stream path are the product's.
Two things differ, both for measuring:

- every generation runs to exactly PREFSTREAM_MAX_TOKENS tokens (`ignore_eos`), so both arms of a
  benchmark generate the same number of tokens;
- the published summary is the ledger of folded event ids (as the `ledger` backend writes) instead of the
  parsed model text: a tiny model with dummy weights writes gibberish that the parser rejects (and a cut
  generation is `truncated`), which would turn every update into a failure and a retry; with the ledger
  the benchmark also sees which events each profile folded.

Each model call is appended to the file named by PREFSTREAM_BENCH_TRACE as `start end prompt_tokens
completion_tokens` (wall-clock seconds; the interval of `AsyncLLM.generate`), from which the benchmark
computes the engine's idle fraction. Before the worker joins its group the engine runs one warm-up wave
(`warm_up`), the same one the raw-engine arm runs.

    PREFSTREAM_BENCH_TRACE=/tmp/trace PREFSTREAM_MODEL_BACKEND=vllm ... python bench/vllm_worker.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefstream.models import prompt as P  # noqa: E402
from prefstream.models.backends.ledger import parse_ledger  # noqa: E402
from prefstream.models.interface import UpdateRequest, UpdateSuccess, Usage  # noqa: E402
from prefstream.schemas.evidence import Evidence, Triple  # noqa: E402

WARM_UP_TRIPLES = 4


def add_engine_flags(p: argparse.ArgumentParser, gpu: bool, *, max_tokens: int, max_num_seqs: int) -> None:
    """The engine settings a benchmark passes explicitly (GPU: CUDA graphs on, longer sequences)."""
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the tiny local model)")
    p.add_argument("--max-tokens", type=int, default=max_tokens, help="tokens every generation runs to")
    p.add_argument("--max-num-seqs", type=int, default=max_num_seqs, help="engine batch = the model window")
    p.add_argument("--max-model-len", type=int, default=4096 if gpu else 2048)
    p.add_argument("--max-num-batched-tokens", type=int, default=8192 if gpu else 4096)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--load-format", default="dummy")
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=not gpu)
    p.add_argument("--queued-fraction", type=float, default=0.0, help="PREFSTREAM_VLLM_QUEUED_FRACTION (both arms)")


def resolve_model(args: argparse.Namespace) -> argparse.Namespace:
    if args.model is None:
        from prefstream.models.tiny import ensure_tiny_model

        args.model = ensure_tiny_model()
    return args


def engine_env(args: argparse.Namespace) -> dict[str, str]:
    """The model settings both arms read (the worker from its environment, the engine arm via load_section)."""
    return {
        "PREFSTREAM_MODEL_BACKEND": "vllm",
        "PREFSTREAM_MODEL": str(args.model),
        "PREFSTREAM_VLLM_MAX_MODEL_LEN": str(args.max_model_len),
        "PREFSTREAM_VLLM_MAX_NUM_SEQS": str(args.max_num_seqs),
        "PREFSTREAM_VLLM_QUEUED_FRACTION": str(args.queued_fraction),
        "PREFSTREAM_VLLM_MAX_NUM_BATCHED_TOKENS": str(args.max_num_batched_tokens),
        "PREFSTREAM_VLLM_DTYPE": args.dtype,
        "PREFSTREAM_VLLM_LOAD_FORMAT": args.load_format,
        "PREFSTREAM_VLLM_ENFORCE_EAGER": str(args.enforce_eager).lower(),
        "PREFSTREAM_MAX_TOKENS": str(args.max_tokens),
        "PREFSTREAM_PROMPT_TOKEN_BUDGET": str(args.max_model_len - args.max_tokens),
        "PREFSTREAM_TIMEOUT_START_OVERHEAD_S": "3600",  # the benchmark measures, it does not time out
        "PREFSTREAM_UPDATE_TIMEOUT_S": "3600",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),  # GiB; ignored on a GPU
    }


def warm_up_ids(tokenizer: Any) -> list[int]:
    """A fixed prompt for the warm-up wave (not one of the measured prompts)."""
    triple = Triple(query="warm up query", chosen="warm up chosen answer", rejected="warm up rejected answer")
    return list(tokenizer.encode(P.render(None, (Evidence(event_id="warm", triples=(triple,) * WARM_UP_TRIPLES),))))


async def warm_up(engine: Any, params: Any, ids: list[int], n: int) -> None:
    """`n` concurrent generations, so the engine's first measured wave does not pay first-use costs."""
    from vllm.inputs import tokens_input

    async def one(i: int) -> None:
        async for _ in engine.generate(tokens_input(ids), params, f"warm-{i}-{time.monotonic_ns()}"):
            pass

    await asyncio.gather(*(one(i) for i in range(n)))


def install(trace_path: Path) -> None:
    """Patch the vllm backend module in this process only (see the module docstring)."""
    from prefstream.models.backends import vllm_engine

    trace = open(trace_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    real_sampling = vllm_engine.sampling_params
    real_start = vllm_engine.VllmBackend.start

    def sampling_params(m: Any, *, degraded: bool, **overrides: Any) -> Any:
        return real_sampling(m, degraded=degraded, **{"ignore_eos": True, **overrides})

    def ledger_outcome(request: UpdateRequest, *, text: str, finish_reason: str | None, prompt_tokens: int,
                       completion_tokens: int, latency_s: float, model_id: str, **_: Any) -> Any:  # fmt: skip
        end = time.time()
        trace.write(f"{end - latency_s:.6f} {end:.6f} {prompt_tokens} {completion_tokens}\n")
        ids = parse_ledger(request.previous_summary) + [e.event_id for e in request.evidence]
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, latency_s=latency_s)
        return UpdateSuccess(request_id=request.request_id, summary="\n".join(ids), usage=usage, model=model_id,
                             prompt_version=P.PROMPT_VERSION)  # fmt: skip

    async def start(self: Any) -> None:
        await real_start(self)
        params = sampling_params(self.settings, degraded=False)
        await warm_up(self.engine, params, warm_up_ids(self.tokenizer), self.max_concurrency)

    vllm_engine.sampling_params = sampling_params
    vllm_engine.outcome = ledger_outcome
    vllm_engine.VllmBackend.start = start


def main() -> int:
    install(Path(os.environ["PREFSTREAM_BENCH_TRACE"]))
    from prefstream.cli import main as cli_main

    return cli_main(["worker"])


if __name__ == "__main__":
    raise SystemExit(main())
