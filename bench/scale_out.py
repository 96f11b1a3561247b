"""Benchmark: events/s with 1 worker against 2 workers on 8 partitions, I/O-bound simulated model.

The model is the `ledger` backend with a fixed latency per update and a fixed concurrency per worker (an
I/O-bound model behind each worker, like one engine or one `vllm serve` per worker). Every user gets
exactly `--per-user` events and the flush policy folds exactly that many per update (MIN = MAX events),
so both arms do the same updates and the figure is the scaling of the stream, not of coalescing. Each
repetition starts fresh workers on fresh topics, waits for the group to be stable, then produces the
whole backlog at once; throughput is events / (last event in a profile - first event sent).

    python bench/scale_out.py                 # 480 users x 4 events, 0.5 s model, window 8 per worker
    python bench/scale_out.py --quick         # smoke size
    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 python bench/scale_out.py   # reuse a running broker

Goal: >= 1.7 (2 workers / 1 worker).
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
    alternate, broker, describe, install_signal_handlers, machine, median_of, ratio_line, write_results,
)  # fmt: skip

NAME = "scale_out"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=480)
    p.add_argument("--per-user", type=int, default=4, help="events per user = events per update")
    p.add_argument("--model-delay", type=float, default=0.5, help="ledger latency per update, s")
    p.add_argument("--concurrency", type=int, default=8, help="model window per worker")
    p.add_argument("--partitions", type=int, default=8)
    add_run_flags(p)
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.model_delay, args.reps = 64, 0.25, 1
    elif args.reps < 3:
        p.error("--reps must be at least 3 (the median of at least 3 is reported); --quick for a smoke run")
    return args


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()
    args = parse_args(argv)
    m = machine()
    print(f"{NAME}: {describe(m)}", flush=True)
    plan = load.Plan(users=args.users, per_user=args.per_user, partitions=args.partitions)
    worker_env = {
        **load.flush_env(args.per_user, args.per_user),
        "PREFSTREAM_MODEL_BACKEND": "ledger",
        "PREFSTREAM_LEDGER_DELAY_S": str(args.model_delay),
        "PREFSTREAM_LEDGER_CONCURRENCY": str(args.concurrency),
    }
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="prefstream-scale-") as tmp:

        def arm(n: int) -> Any:
            return lambda rep: load.run(bootstrap, Path(tmp), f"scale{n}", plan, worker_env, workers=n)

        runs = alternate({"1 worker": arm(1), "2 workers": arm(2)}, args.reps)
    one, two = median_of(runs["1 worker"], "events_per_s"), median_of(runs["2 workers"], "events_per_s")
    ceiling = args.concurrency / args.model_delay * args.per_user  # events/s one worker's model allows
    ratio = two / one
    payload = {
        "name": NAME, "machine": m, "args": vars(args), "runs": runs,
        "model_bound_events_per_s_per_worker": ceiling,
        "median_events_per_s": {"1 worker": one, "2 workers": two}, "ratio": round(ratio, 3), "goal": 1.7,
    }  # fmt: skip

    def plot(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for i, (name, rs) in enumerate(runs.items()):
            ax.scatter([i + 1] * len(rs), [r["events_per_s"] for r in rs], color="gray", zorder=3, s=12)
            ax.bar(i + 1, median_of(rs, "events_per_s"), label=name, alpha=0.7)
        ax.axhline(ceiling, ls=":", color="k", label="one worker's model ceiling")
        ax.axhline(2 * ceiling, ls="--", color="k", label="two workers' ceiling")
        ax.set_xticks([1, 2], list(runs))
        ax.set_ylabel("events/s folded")
        ax.set_title(f"scale-out: {two / one:.2f}x ({args.model_delay} s model, window {args.concurrency}/worker)")
        ax.legend(fontsize=7)

    write_results(NAME, payload, plot, args.results)
    print(f"1 worker {one:.1f} events/s | 2 workers {two:.1f} events/s | model ceiling {ceiling:.0f} events/s "
          f"per worker | ratio {ratio:.2f} (goal >= 1.7)")  # fmt: skip
    ratio_line(NAME, ratio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
