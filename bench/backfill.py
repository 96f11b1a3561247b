"""Backfill against replay: updates and model tokens to fold N users x M past events into profiles.

Two runs, each with its own topics and one worker (ledger backend, which counts prompt and completion
tokens the way docs/models.md describes; its summary lists every folded event id, so completion tokens
grow with the history):

- replay: the events are produced to the events topic, as a replay of the history through the live path
  would do (each user's events in time order, users interleaved);
- backfill: the same events, as a JSONL file, through `prefstream backfill`.

Each run ends when every user's profile holds its M events. Updates are the profile records published,
tokens the sum of the records' `prompt_tokens` and `completion_tokens`. Flush settings: the defaults, with
`FLUSH_IDLE_S`, `FLUSH_MAX_WAIT_S` and `FLUSH_MIN_INTERVAL_S` shortened (they change when updates run, not
how many events one takes, since a replay delivers a user's events faster than an update); the token
budget is `--budget`. Results go to bench/results/backfill/ as JSON; the last line is
`RATIO backfill_updates <replay updates / backfill updates>`; `--table` prints the docs' table from them.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/backfill.py --users 50 --events 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefstream.kafka import local  # noqa: E402
from tests.streams.harness import CI_WORKER_ENV, OPEN_CLIENTS, ProfileLog, Producer, Worker, event, wait_for  # noqa: E402

T0 = 1_700_000_000_000
RESULTS = ROOT / "bench" / "results" / "backfill"


def events_of(users: int, per_user: int) -> list[dict[str, object]]:
    """Every user's history, users interleaved, each user's in time order (a replayed log)."""
    return [event(f"u{u:04d}", f"u{u:04d}-e{i:04d}", ts=T0 + i * 60_000) for i in range(per_user) for u in range(users)]


def run_once(mode: str, base_env: dict[str, str], workdir: Path, users: int, per_user: int) -> dict[str, float]:
    token = uuid.uuid4().hex[:8]
    env = {**base_env, "PREFSTREAM_APP_ID": f"bf.{mode}.{token}", "PREFSTREAM_EVENTS_TOPIC": f"bf.events.{token}",
           "PREFSTREAM_PROFILES_TOPIC": f"bf.profiles.{token}", "PREFSTREAM_DLQ_TOPIC": f"bf.dlq.{token}",
           "PREFSTREAM_FAILURES_TOPIC": f"bf.failures.{token}"}  # fmt: skip
    worker = Worker(env, mode, workdir).start()
    try:
        worker.wait_ready()
        profiles = ProfileLog(env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_PROFILES_TOPIC"])
        evs = events_of(users, per_user)
        started = time.monotonic()
        if mode == "replay":
            producer = Producer(env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_EVENTS_TOPIC"],
                                int(env["PREFSTREAM_PARTITIONS"]))  # fmt: skip
            for e in evs:
                producer.send(e)
            producer.flush()
        else:
            path = workdir / f"history-{token}.jsonl"
            path.write_text("".join(json.dumps(e) + "\n" for e in evs))
            subprocess.run([sys.executable, "-m", "prefstream.cli", "backfill", "--no-progress", str(path)],
                           env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, check=True)  # fmt: skip
        names = [f"u{u:04d}" for u in range(users)]

        def done() -> bool:
            profiles.poll()
            return all((p := profiles.last(n)) is not None and p.events_applied == per_user for n in names)

        wait_for(done, 600, f"{mode}: every history folded", worker.tail)
        seconds = time.monotonic() - started
        records = [p for n in names for p in profiles.by_user.get(n, []) if p is not None]
        return {
            "updates": len(records),
            "prompt_tokens": sum(p.prompt_tokens for p in records),
            "completion_tokens": sum(p.completion_tokens for p in records),
            "seconds": round(seconds, 1),
        }
    finally:
        worker.stop()


def table() -> str:
    """The docs' table (docs/streams.md, "Backfill"), from every result file."""
    rows = ["| users x events | updates replay / backfill | tokens (prompt + completion) replay / backfill | "
            "ratio updates | ratio tokens | seconds replay / backfill |", "| --- | --- | --- | --- | --- | --- |"]
    for path in sorted(RESULTS.glob("*.json"), key=lambda p: [int(x) for x in p.stem.split("x")]):
        r = json.loads(path.read_text())
        a, b = r["replay"], r["backfill"]
        rows.append(
            f"| {r['users']} x {r['events_per_user']} | {a['updates']} / {b['updates']} | "
            f"{a['prompt_tokens'] + a['completion_tokens']} / {b['prompt_tokens'] + b['completion_tokens']} | "
            f"{r['ratio_updates']} | {r['ratio_tokens']} | {a['seconds']} / {b['seconds']} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true", help="print the docs' table from the result files and exit")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--events", type=int, default=100, help="events per user")
    ap.add_argument("--budget", type=int, default=2000, help="PREFSTREAM_FLUSH_TOKEN_BUDGET (ledger tokens)")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--out", type=Path, help="result JSON (default: bench/results/backfill/<users>x<events>.json)")
    args = ap.parse_args()
    if args.table:
        print(table())
        return 0
    with tempfile.TemporaryDirectory(prefix="prefstream-backfill-") as tmp:
        workdir = Path(tmp)
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        cluster = None if external else local.start(workdir / "kafka")
        flush = {"PREFSTREAM_FLUSH_MIN_EVENTS": "4", "PREFSTREAM_FLUSH_SATURATED_MIN_EVENTS": "8",
                 "PREFSTREAM_FLUSH_IDLE_S": "1", "PREFSTREAM_FLUSH_MAX_WAIT_S": "5",
                 "PREFSTREAM_FLUSH_MIN_INTERVAL_S": "1"}  # fmt: skip
        env = {**CI_WORKER_ENV, **flush, "PREFSTREAM_LOG_FORMAT": "json",
               "KAFKA_BOOTSTRAP_SERVERS": external or cluster.bootstrap_servers,  # type: ignore[union-attr]
               "PREFSTREAM_PARTITIONS": str(args.partitions), "PREFSTREAM_FLUSH_TOKEN_BUDGET": str(args.budget)}  # fmt: skip
        try:
            result = {
                "users": args.users, "events_per_user": args.events, "budget": args.budget,
                "flush": {k.removeprefix("PREFSTREAM_"): v for k, v in flush.items()} | {"FLUSH_MAX_EVENTS": "32"},
                "replay": run_once("replay", env, workdir, args.users, args.events),
                "backfill": run_once("backfill", env, workdir, args.users, args.events),
            }  # fmt: skip
        finally:
            while OPEN_CLIENTS:
                OPEN_CLIENTS.pop().close()
            if cluster is not None:
                local.stop(cluster.root)
    r, b = result["replay"], result["backfill"]
    result["ratio_updates"] = round(r["updates"] / b["updates"], 2)
    result["ratio_tokens"] = round((r["prompt_tokens"] + r["completion_tokens"]) / (b["prompt_tokens"] + b["completion_tokens"]), 2)
    out = args.out or RESULTS / f"{args.users}x{args.events}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for mode in ("replay", "backfill"):
        m = result[mode]
        print(f"{mode:8s} updates {m['updates']:6d}  prompt tokens {m['prompt_tokens']:8d}  "
              f"completion tokens {m['completion_tokens']:8d}  {m['seconds']} s")  # fmt: skip
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    print(f"RATIO backfill_updates {result['ratio_updates']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
