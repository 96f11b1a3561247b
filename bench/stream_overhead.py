"""Stream overhead: events/s of one prefstream worker catching up, beside a plain faust agent and a raw consumer.

Pre-loads N `pair` events for U users on P partitions into one topic, then measures, on the same broker
and the same topic contents, arms taken in turn (alternating, `--repeat` rounds, median reported):

- `prefstream`: `prefstream worker` (ledger backend, no model delay, flush settings that never start an
  update), catching up from the start of the topic;
- `faust`: a pass-through faust agent with prefstream's own faust and RocksDB options
  (`streams.topology.faust_options`, `ROCKSDB_OPTIONS`) doing, per event, `json.loads`, one table read
  and one table write of the raw value (the read-modify-write every stateful stream does);
- `aiokafka`: a group-less aiokafka consumer reading the topic (the ceiling of the client library).

The two faust arms are measured the same way, from outside: the bench polls (every 0.1 s) how many events
each has taken (the worker's `prefstream_events_received_total`; a count the agent writes to a file every
100 events) and events/s is (last - first count) / elapsed between the first poll that saw an event and the
one that saw the whole topic; CPU per event is the process's user + system time from /proc over that
window (all threads). The raw consumer times itself (first to last record, process CPU).

`--users-scale 2000,20000,200000` measures the worker alone with that many users holding pending evidence:
each user first gets one event (the warm-up, not timed), then N events spread over all users are timed;
no update starts, so the fold scheduler holds every user as waiting. It prints `RATIO stream_scaling
<events/s at the largest / at the smallest>` (1.0: per-event cost independent of how many users wait).

`--profile` runs each faust-based arm once more under py-spy (not in the medians) and keeps its hottest frames.

    .venv/bin/python bench/stream_overhead.py                       # defaults: 40,000 events, 2,000 users, 8 partitions
    .venv/bin/python bench/stream_overhead.py --events 4000 --users 200 --repeat 1    # a quick check
    .venv/bin/python bench/stream_overhead.py --users-scale 2000,20000,200000 --events 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "stream_overhead"
POLL_S = 0.1
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: Flush settings under which no update ever starts: the worker only ingests (the model is out of the way).
NO_UPDATE_ENV = {
    "PREFSTREAM_MODEL_BACKEND": "ledger", "PREFSTREAM_LEDGER_DELAY_S": "0",
    "PREFSTREAM_FLUSH_MIN_EVENTS": "1000000", "PREFSTREAM_FLUSH_MAX_EVENTS": "1000000",
    "PREFSTREAM_FLUSH_SATURATED_MIN_EVENTS": "1000000", "PREFSTREAM_FLUSH_TOKEN_BUDGET": "1000000000",
    "PREFSTREAM_FLUSH_MAX_WAIT_S": "86400", "PREFSTREAM_FLUSH_IDLE_S": "86400",
    "PREFSTREAM_MAX_PENDING_EVENTS": "1000000", "PREFSTREAM_LOG_LEVEL": "warning",
}  # fmt: skip


@dataclass
class Run:
    """One measured run of one arm."""

    arm: str
    events: int  # events inside the timed window
    seconds: float
    cpu_s: float
    users: int = 0
    complete: bool = True  # False: the timeout ended it before the last event

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.cpu_s / self.events if self.events else 0.0

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "events_per_s": self.events_per_s, "cpu_us_per_event": self.cpu_us_per_event}


@dataclass
class Bench:
    bootstrap: str
    workdir: Path
    partitions: int
    timeout: float
    base_env: dict[str, str] = field(default_factory=dict)

    # --- topic contents ---------------------------------------------------------------------------

    def preload(self, topic: str, users: list[str], warm: bool, events: int, seed: int) -> int:
        """Write the events (keyed, on the user's murmur2 partition); returns how many were written."""
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic

        from prefstream.streams.partitioning import partition_for

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, self.partitions, 1)])
        finally:
            admin.close()
        rng = random.Random(seed)
        order = list(users) if warm else []
        order += [rng.choice(users) for _ in range(events)]
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=50, batch_size=512 * 1024)
        parts = {u: partition_for(u, self.partitions) for u in users}
        for i, user in enumerate(order):
            value = {"event_id": f"e{i}", "user_id": user, "ts": 1_764_000_000_000 + i, "kind": "pair",
                     "query": "which one?", "chosen": f"answer A {i}", "rejected": "answer B"}  # fmt: skip
            producer.send(topic, key=user.encode(), value=json.dumps(value).encode(), partition=parts[user])
        producer.flush()
        producer.close()
        return len(order)

    # --- arms ---------------------------------------------------------------------------------------

    def env(self, topic: str, app_id: str) -> dict[str, str]:
        from tests.streams.harness import CI_WORKER_ENV

        return {
            **os.environ, **CI_WORKER_ENV, **NO_UPDATE_ENV, **self.base_env,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "PREFSTREAM_PARTITIONS": str(self.partitions),
            "PREFSTREAM_EVENTS_TOPIC": topic, "PREFSTREAM_PROFILES_TOPIC": f"{app_id}.profiles",
            "PREFSTREAM_DLQ_TOPIC": f"{app_id}.dlq", "PREFSTREAM_FAILURES_TOPIC": f"{app_id}.failures",
            "PREFSTREAM_APP_ID": app_id, "PYTHONPATH": str(ROOT),
        }  # fmt: skip

    def faust_arm(self, arm: str, topic: str, total: int, start_at: int, profile: Path | None = None) -> Run:  # noqa: PLR0913
        """Run `prefstream worker` (arm prefstream) or the pass-through agent (arm faust) until it has taken
        every event of the topic; time from the first count past `start_at` to the last."""
        from prefstream.kafka.local import free_port

        app_id = f"bench-{arm}-{uuid.uuid4().hex[:8]}"
        port = free_port()
        counter = self.workdir / f"{app_id}.count"
        env = self.env(topic, app_id) | {"PREFSTREAM_DATA_DIR": str(self.workdir / app_id),
                                         "PREFSTREAM_WEB_PORT": str(port), "BENCH_COUNTER": str(counter),
                                         "BENCH_TOTAL": str(total)}  # fmt: skip
        if arm == "prefstream":
            cmd = [sys.executable, "-m", "prefstream.cli", "worker"]
            count = lambda: _metric(port, "prefstream_events_received_total")  # noqa: E731
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "faust"]
            count = lambda: _read_counter(counter)  # noqa: E731
        log = open(self.workdir / f"{app_id}.log", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        try:
            samples = self._watch(proc, app_id, count, total, start_at, profile)
            if samples.first is None:
                tail = (self.workdir / f"{app_id}.log").read_text(errors="replace").splitlines()[-15:]
                print("\n".join(["no progress; the log ends:", *tail]), file=sys.stderr)
        finally:
            _stop(proc)
            log.close()
            _delete_topics(self.bootstrap, _topics_of(self.bootstrap, app_id))
        return samples.run(arm)

    def _watch(self, proc: subprocess.Popen[bytes], name: str, count: Any, total: int, start_at: int,
               profile: Path | None) -> _Samples:  # fmt: skip
        samples = _Samples(total=total)
        deadline = time.monotonic() + self.timeout
        poll_s = POLL_S if start_at < 20_000 else 0.5  # a scrape walks the pending users: fewer when they are many
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    print((self.workdir / f"{name}.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                    raise RuntimeError(f"{name} exited with {proc.returncode} (log: {self.workdir / name}.log)")
                done = count()
                now, cpu = time.monotonic(), _cpu_s(proc.pid)
                if samples.first is None and done > start_at:
                    samples.first = (now, done, cpu)
                    if profile is not None:
                        samples.spy = _py_spy(proc.pid, profile)
                if samples.first is not None:
                    samples.last = (now, done, cpu)
                if os.environ.get("BENCH_VERBOSE") and int(now / poll_s) % int(2 / poll_s) == 0:
                    print(f"  {name}: {done}/{total}, cpu {cpu:.1f} s", file=sys.stderr, flush=True)
                if done >= total:
                    samples.complete = True
                    break
                time.sleep(poll_s)
        finally:
            if samples.spy is not None:
                samples.spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                samples.spy.wait(timeout=120)
        return samples

    def aiokafka_arm(self, topic: str, total: int) -> Run:
        """The raw consumer, timed in its own process (first to last record)."""
        out = self.workdir / f"aiokafka-{uuid.uuid4().hex[:6]}.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = ["--child", "aiokafka", "--bootstrap", self.bootstrap, "--topic", topic, "--total", str(total),
                "--partitions", str(self.partitions), "--child-out", str(out)]  # fmt: skip
        subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env, check=True,
                       timeout=self.timeout)  # fmt: skip
        r = json.loads(out.read_text())
        return Run("aiokafka", r["events"], r["seconds"], r["cpu_s"])


@dataclass
class _Samples:
    total: int
    first: tuple[float, int, float] | None = None  # (monotonic time, events taken, process cpu s)
    last: tuple[float, int, float] | None = None
    complete: bool = False
    spy: subprocess.Popen[bytes] | None = None

    def run(self, arm: str) -> Run:
        if self.first is None or self.last is None or self.last[1] <= self.first[1]:
            raise RuntimeError(f"{arm}: no progress observed before the timeout")
        (t0, n0, c0), (t1, n1, c1) = self.first, self.last
        return Run(arm, n1 - n0, t1 - t0, c1 - c0, complete=self.complete)


def _metric(port: int, name: str) -> int:
    """One counter of a worker's /metrics (0 while it does not answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    except OSError:
        return 0
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0


def _read_counter(path: Path) -> int:
    try:
        return int(path.read_bytes() or b"0")
    except (OSError, ValueError):
        return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (/proc/<pid>/stat fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample the worker for a while (raw collapsed stacks, summarized by `top_frames`)."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        print("py-spy is not installed (pip install '.[bench]'): no profile", file=sys.stderr)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", str(out),
           "--nonblocking"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def top_frames(raw: Path, n: int = 25) -> dict[str, list[tuple[str, float]]]:
    """The hottest frames of a py-spy raw profile: by self time and by total (inclusive) time, in %."""
    self_t: Counter[str] = Counter()
    total_t: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        samples += c
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if frames:
            self_t[_short(frames[-1])] += c
        for f in {_short(f) for f in frames}:
            total_t[f] += c
    pct = lambda cnt: [(k, round(100 * v / samples, 1)) for k, v in cnt.most_common(n)]  # noqa: E731
    return {"samples": [("all", float(samples))], "self": pct(self_t), "total": pct(total_t)}


def _short(frame: str) -> str:
    """`func (path/to/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/wt-", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "/wt-":
                where = where.split("/", 1)[1]
    return f"{name} ({where})"


# --- children -----------------------------------------------------------------------------------------


def child_faust() -> None:
    """The pass-through agent: prefstream's faust options; per event json.loads, one table read, one write."""
    import faust

    from prefstream.settings import Settings
    from prefstream.streams.topology import ROCKSDB_OPTIONS, faust_options
    from prefstream.topics import compacted_configs

    settings = Settings.from_env()
    settings.worker.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.worker.app_id, **faust_options(settings))
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(settings.topics.events, **raw)
    table = app.Table("state", partitions=settings.topics.partitions, key_type=bytes, value_type=bytes,
                      extra_topic_configs=compacted_configs(settings.topics), options=ROCKSDB_OPTIONS)  # fmt: skip

    counter, total = Path(os.environ["BENCH_COUNTER"]), int(os.environ["BENCH_TOTAL"])

    @app.agent(source, name="passthrough")
    async def passthrough(stream: Any) -> None:
        seen = 0
        async for event in stream.events():
            value = event.message.value
            json.loads(value)
            table.get(event.message.key)
            table[event.message.key] = value
            seen += 1
            if seen % 100 == 0 or seen == total:  # the bench polls this count (the worker's is its events_received metric)
                counter.write_bytes(b"%d" % seen)

    worker = faust.Worker(app, loglevel="warning", redirect_stdouts=False)
    worker.execute_from_commandline()


def child_aiokafka(bootstrap: str, topic: str, partitions: int, total: int, out: Path) -> None:
    """A group-less consumer of every partition: time and CPU from the first record to the `total`-th."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def consume() -> dict[str, float]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_poll_records=500)  # fmt: skip
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            seen, first, t0, c0 = 0, 0, 0.0, 0.0
            while seen < total:
                batch = await consumer.getmany(timeout_ms=1000)
                n = sum(len(records) for records in batch.values())
                if n and not seen:  # the clock starts after the first batch, which is then not counted
                    first, t0, c0 = n, time.monotonic(), time.process_time()
                seen += n
            return {"events": seen - first, "seconds": time.monotonic() - t0, "cpu_s": time.process_time() - c0}
        finally:
            await consumer.stop()

    out.write_text(json.dumps(asyncio.run(consume())))


# --- reporting ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))  # fmt: skip
    return {"cores": os.cpu_count(), "cpu": model, "ram_gib": round(mem_kb / 1024**2, 1),
            "python": platform.python_version(), "host": platform.node()}  # fmt: skip


def describe(m: dict[str, Any]) -> str:
    return f"{m['cores']} cores, {m['cpu']}, {m['ram_gib']} GiB RAM, Python {m['python']}"


def summarize(runs: list[Run], arm: str) -> dict[str, float]:
    mine = [r for r in runs if r.arm == arm]
    return {
        "events_per_s": statistics.median(r.events_per_s for r in mine),
        "cpu_us_per_event": statistics.median(r.cpu_us_per_event for r in mine),
        "runs": len(mine),
    }


def plot_overhead(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in ("prefstream", "faust", "aiokafka") if a in result["summary"]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "events_per_s", "events/s (log)"), (axes[1], "cpu_us_per_event", "CPU µs/event")):
        values = [result["summary"][a][key] for a in arms]
        bars = ax.bar(arms, values, color=["#c0504d", "#4f81bd", "#9bbb59"][: len(arms)])
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(label)
        if key == "events_per_s":
            ax.set_yscale("log")
        for r in result["runs"]:
            if r["arm"] in arms:
                ax.plot(arms.index(r["arm"]), r[key], "k.", ms=4)
    p = result["params"]
    fig.suptitle(f"stream overhead ({result.get('label', '')}): {p['events']:,} events, {p['users']:,} users, "
                 f"{p['partitions']} partitions; prefstream/faust = {result['ratio']:.2f}", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def plot_scaling(results: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for result in results:
        users = [s["users"] for s in result["scale"]]
        ax.plot(users, [s["events_per_s"] for s in result["scale"]], "o-",
                label=f"{result.get('label', '')}: ratio {result['ratio']:.2f}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("users holding pending evidence")
    ax.set_ylabel("events/s (one worker)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("prefstream worker: events/s against waiting users", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=40_000, help="events timed per run")
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of alternating arms (median reported)")
    ap.add_argument("--arms", default="prefstream,faust,aiokafka")
    ap.add_argument("--users-scale", default="", help="comma list of user counts: the scaling mode")
    ap.add_argument("--profile", action="store_true", help="one more run of each faust-based arm under py-spy")
    ap.add_argument("--label", default="latest", help="names the result files (e.g. before, after)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run at most")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--child", choices=["faust", "aiokafka"], help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--total", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "faust":
        child_faust()
        return 0
    if args.child == "aiokafka":
        child_aiokafka(args.bootstrap, args.topic, args.partitions, args.total, args.child_out)
        return 0

    from prefstream.kafka import local

    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prefstream-overhead-") as tmp:
        workdir = Path(tmp)
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        cluster = None if external else local.start(workdir / "kafka")
        bootstrap = external or cluster.bootstrap_servers  # type: ignore[union-attr]
        bench = Bench(bootstrap, workdir, args.partitions, args.timeout)
        try:
            if args.users_scale:
                return scaling(bench, args)
            return overhead(bench, args)
        finally:
            if cluster is not None:
                local.stop(cluster.root)


def overhead(bench: Bench, args: argparse.Namespace) -> int:
    m = machine()
    topic = f"bench.overhead.{uuid.uuid4().hex[:8]}"
    users = [f"user{i:06d}" for i in range(args.users)]
    total = bench.preload(topic, users, False, args.events, args.seed)
    arms = args.arms.split(",")
    runs: list[Run] = []
    profile_raw = RESULTS / f"profile-{args.label}.txt"
    faust_raw = RESULTS / f"profile-faust-{args.label}.txt"
    try:
        for rnd in range(args.repeat):
            order = arms if rnd % 2 == 0 else arms[::-1]  # alternate, so drift in the machine hits every arm
            for arm in order:
                run = bench.aiokafka_arm(topic, total) if arm == "aiokafka" else bench.faust_arm(arm, topic, total, 0)
                run.users = args.users
                runs.append(run)
                print(f"round {rnd + 1} {arm:10s} {run.events_per_s:10,.0f} events/s  {run.cpu_us_per_event:7.1f} µs CPU/event"
                      f"  ({run.events} events in {run.seconds:.2f} s)", flush=True)  # fmt: skip
        for arm in [a for a in arms if a != "aiokafka"] if args.profile else []:  # runs of their own: the sampler takes CPU
            profiled = bench.faust_arm(arm, topic, total, 0, profile_raw if arm == "prefstream" else faust_raw)
            print(f"profiled   {arm:10s} {profiled.events_per_s:10,.0f} events/s (under py-spy; not in the medians)")
    finally:
        _delete_topics(bench.bootstrap, [topic])
    summary = {a: summarize(runs, a) for a in arms}
    ratio = summary["prefstream"]["events_per_s"] / summary["faust"]["events_per_s"] if {"prefstream", "faust"} <= set(arms) else float("nan")
    result: dict[str, Any] = {
        "bench": "stream_overhead", "label": args.label, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": m, "params": {"events": args.events, "users": args.users, "partitions": args.partitions,
                                 "repeat": args.repeat, "passthrough": "json.loads + 1 table read + 1 table write"},
        "runs": [r.row() for r in runs], "summary": summary, "ratio": ratio,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }  # fmt: skip
    for key, raw in (("profile", profile_raw), ("profile_faust", faust_raw)):
        if args.profile and raw.exists():
            result[key] = top_frames(raw)
            print(f"py-spy, {'prefstream worker' if key == 'profile' else 'pass-through agent'}, top frames by self time (% of samples):")
            for name, pct in result[key]["self"][:15]:
                print(f"  {pct:5.1f}%  {name}")
    out = RESULTS / f"overhead-{args.label}.json"
    out.write_text(json.dumps(result, indent=1))
    plot_overhead(result, out.with_suffix(".png"))
    print(f"machine: {describe(m)}")
    print(f"{args.events:,} events, {args.users:,} users, {args.partitions} partitions; median of {args.repeat}:")
    for arm, s in summary.items():
        print(f"  {arm:10s} {s['events_per_s']:10,.0f} events/s  {s['cpu_us_per_event']:7.1f} µs CPU/event")
    print(f"results: {out.relative_to(ROOT)}, {out.with_suffix('.png').relative_to(ROOT)}")
    print(f"RATIO stream_overhead {ratio:.3f}")
    return 0


def scaling(bench: Bench, args: argparse.Namespace) -> int:
    m = machine()
    scales = [int(x) for x in args.users_scale.split(",")]
    runs: list[Run] = []
    for n_users in scales:
        users = [f"user{i:07d}" for i in range(n_users)]
        topic = f"bench.scaling.{uuid.uuid4().hex[:8]}"
        try:
            total = bench.preload(topic, users, True, args.events, args.seed)
            for rnd in range(args.repeat):
                # The warm-up (one event per user) is not timed: timing starts once the worker has taken it.
                run = bench.faust_arm("prefstream", topic, total, n_users)
                run.users = n_users
                runs.append(run)
                print(f"{n_users:8,d} users, round {rnd + 1}: {run.events_per_s:8,.0f} events/s "
                      f"{run.cpu_us_per_event:7.1f} µs CPU/event{'' if run.complete else ' (timed out)'}", flush=True)  # fmt: skip
        finally:
            _delete_topics(bench.bootstrap, [topic])
    scale = []
    for n_users in scales:
        mine = [r for r in runs if r.users == n_users]
        scale.append({"users": n_users, "events_per_s": statistics.median(r.events_per_s for r in mine),
                      "cpu_us_per_event": statistics.median(r.cpu_us_per_event for r in mine),
                      "complete": all(r.complete for r in mine)})  # fmt: skip
    ratio = scale[-1]["events_per_s"] / scale[0]["events_per_s"]
    result = {
        "bench": "stream_scaling", "label": args.label, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": m, "params": {"events": args.events, "partitions": args.partitions, "repeat": args.repeat,
                                 "users_scale": scales},
        "runs": [r.row() for r in runs], "scale": scale, "ratio": ratio,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }  # fmt: skip
    out = RESULTS / f"scaling-{args.label}.json"
    out.write_text(json.dumps(result, indent=1))
    plot_scaling(_all_scaling(), RESULTS / "scaling.png")
    print(f"machine: {describe(m)}")
    print(f"{args.events:,} timed events after one warm-up event per user, {args.partitions} partitions; median of {args.repeat}:")
    for s in scale:
        print(f"  {s['users']:8,d} users waiting: {s['events_per_s']:8,.0f} events/s  {s['cpu_us_per_event']:7.1f} µs CPU/event")
    print(f"results: {out.relative_to(ROOT)}, {(RESULTS / 'scaling.png').relative_to(ROOT)}")
    print(f"RATIO stream_scaling {ratio:.3f}")
    return 0


def _all_scaling() -> list[dict[str, Any]]:
    """Every scaling result on disk (before and after a change share one plot)."""
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("scaling-*.json"))]


def _topics_of(bootstrap: str, app_id: str) -> list[str]:
    """The topics one arm's run created (its internal topics and its output topics)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return [t for t in admin.list_topics() if t.startswith(app_id)]
    finally:
        admin.close()


def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics(topics)
    except Exception as exc:  # best effort: a bench topic left behind only takes disk
        print(f"could not delete {topics}: {exc}", file=sys.stderr)
    finally:
        admin.close()


if __name__ == "__main__":
    raise SystemExit(main())
