"""Benchmark: event-to-profile latency under an open-loop load of 25/50/75% of the measured capacity.

First the capacity, in the same run: a burst of `--burst-per-user` events for each of `--users` users,
events/s folded (median of `--reps`). Then an open-loop producer sends events at 25, 50 and 75% of that
rate for `--duration` s each, to users drawn at random (seeded): the producer never waits for the worker.
Each event's latency is its send -> the first published profile that lists it.

The bound the flush policy promises (streams/policy.py): an event waits at most MAX_WAIT_S (plus one
scheduler tick, FLUSH_TICK_S) before its update starts, while the model has a free slot and its user has
no update in flight; the update then takes the model's latency. An event that arrives while its user's
update is in flight waits for that one first, which MAX_WAIT_S covers as long as an update takes less.
So bound = MAX_WAIT_S + FLUSH_TICK_S + model latency. RATIO latency = p99 at 75% / bound (<= 1 keeps
the promise).

The model is the `ledger` backend with a fixed latency and window; flush settings as in coalescing.py.

    python bench/latency.py             # capacity, then 3 x (25%, 50%, 75%) of 30 s each
    python bench/latency.py --quick     # smoke size, 1 repetition
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

NAME = "latency"
LEVELS = (0.25, 0.50, 0.75)
MAX_WAIT_S, TICK_S = 2.0, 0.2
FLUSH = load.flush_env(4, 32, max_wait_s=MAX_WAIT_S, idle_s=0.5, saturated_min_events=8, tick_s=TICK_S)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--burst-per-user", type=int, default=10, help="capacity run: events per user")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of open-loop load per level")
    p.add_argument("--model-delay", type=float, default=0.25, help="ledger latency per call, s")
    p.add_argument("--concurrency", type=int, default=8, help="ledger window")
    p.add_argument("--partitions", type=int, default=4)
    add_run_flags(p)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.burst_per_user, args.duration, args.reps = 60, 5, 6.0, 1
    elif args.reps < 3:
        p.error("--reps must be at least 3 (the median of at least 3 is reported); --quick for a smoke run")
    return args


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()
    args = parse_args(argv)
    m = machine()
    print(f"{NAME}: {describe(m)}", flush=True)
    env = {**FLUSH, "PREFSTREAM_MODEL_BACKEND": "ledger", "PREFSTREAM_LEDGER_DELAY_S": str(args.model_delay),
           "PREFSTREAM_LEDGER_CONCURRENCY": str(args.concurrency)}  # fmt: skip
    bound = MAX_WAIT_S + TICK_S + args.model_delay
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="prefstream-latency-") as tmp:
        workdir = Path(tmp)
        burst = load.Plan(users=args.users, per_user=args.burst_per_user, partitions=args.partitions)
        print("capacity (burst):", flush=True)
        cap_runs = alternate({"capacity": lambda rep: load.run(bootstrap, workdir, "lat-cap", burst, env)}, args.reps)
        capacity = median_of(cap_runs["capacity"], "events_per_s")
        print(f"capacity {capacity:.1f} events/s; open-loop levels:", flush=True)

        def level(frac: float) -> Any:
            rate = frac * capacity
            # users x per_user events in about `duration` s; with a seed each goes to a user drawn at random.
            per_user = max(1, round(rate * args.duration / args.users))
            plan = load.Plan(users=args.users, per_user=per_user, rate=rate, partitions=args.partitions, seed=args.seed)
            return lambda rep: {"offered_per_s": round(rate, 1), **load.run(bootstrap, workdir, "lat", plan, env)}

        runs = alternate({f"{int(f * 100)}%": level(f) for f in LEVELS}, args.reps)
    lat = {name: {q: median_of([r["latency_s"] for r in rs], q) for q in ("p50", "p95", "p99")} for name, rs in runs.items()}
    ratio = lat["75%"]["p99"] / bound
    payload = {
        "name": NAME, "machine": m, "args": vars(args), "flush": FLUSH,
        "capacity_runs": cap_runs["capacity"], "capacity_events_per_s": capacity, "runs": runs,
        "median_latency_s": lat, "bound_s": bound,
        "bound_formula": f"MAX_WAIT_S {MAX_WAIT_S} + FLUSH_TICK_S {TICK_S} + model latency {args.model_delay}",
        "ratio": round(ratio, 3),
    }  # fmt: skip

    def plot(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        xs = [int(f * 100) for f in LEVELS]
        for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
            ax.plot(xs, [lat[f"{x}%"][q] for x in xs], style, label=q)
        ax.axhline(bound, ls="--", color="k", label=f"policy bound {bound:.2f} s")
        ax.set_xlabel(f"offered load, % of capacity ({capacity:.0f} events/s)")
        ax.set_ylabel("event -> profile latency, s")
        ax.set_xticks(xs)
        ax.set_title(f"latency under load: p99 at 75% = {ratio:.2f} x bound")
        ax.legend(fontsize=8)

    write_results(NAME, payload, plot, args.results)
    for name in runs:
        q = lat[name]
        print(f"{name} of {capacity:.0f} events/s: p50 {q['p50']} s, p95 {q['p95']} s, p99 {q['p99']} s "
              f"(bound {bound:.2f} s)")  # fmt: skip
    ratio_line(NAME, ratio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
