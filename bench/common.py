"""What every benchmark in bench/ shares: the broker, the machine, the runs, the output.

- `broker()`: the Kafka broker, reused from KAFKA_BOOTSTRAP_SERVERS or started in a temporary directory;
- `machine()`: cores, CPU model, memory and GPU, printed with every result (figures mean nothing without it);
- `alternate()`: arms measured side by side, one repetition of each in turn, so drift hits every arm alike;
- `ProfileTimes`: when each event first appears in a published profile (ledger summaries list event ids);
- `write_results()` + `ratio_line()`: raw figures as JSON and a PNG under bench/results/<name>/, then the
  `RATIO <name> <value>` line that ends every benchmark's output.

SIGTERM is turned into KeyboardInterrupt (`install_signal_handlers`), so a killed benchmark runs its
`finally` blocks and stops the workers and the broker it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: `tests.streams.harness` is not installed

from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from prefstream.kafka import local  # noqa: E402
from prefstream.models.backends.ledger import parse_ledger  # noqa: E402
from prefstream.schemas.profiles import decode_profile  # noqa: E402
from tests.streams.harness import OPEN_CLIENTS, Worker  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def install_signal_handlers() -> None:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C, so cleanup in `finally` runs either way."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


# --- the machine -------------------------------------------------------------------------------


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name and memory, or None on a machine without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()
    return first[0].strip() if first else None


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, memory, GPU, and how busy the machine was."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "gpu": gpu_name(),
        "load_avg_1m": round(os.getloadavg()[0], 2),  # other work on the machine makes figures noisy
        "python": platform.python_version(),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def describe(m: dict[str, Any]) -> str:
    gpu = m["gpu"] or "no GPU"
    return f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, {gpu}, load {m['load_avg_1m']} at start"


# --- the broker and the topics -----------------------------------------------------------------


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """The bootstrap servers of KAFKA_BOOTSTRAP_SERVERS, or of a broker started here (and stopped after)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    tmp = Path(tempfile.mkdtemp(prefix="prefstream-bench-kafka-"))
    cluster = local.start(tmp / "kafka")
    try:
        yield cluster.bootstrap_servers
    finally:
        local.stop(cluster.root)
        shutil.rmtree(tmp, ignore_errors=True)


def app_env(bootstrap: str, prefix: str, *, events_topic: str | None = None) -> dict[str, str]:
    """Unique topic names and app id for one worker group (the events topic may be shared between groups)."""
    token = uuid.uuid4().hex[:8]
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PREFSTREAM_EVENTS_TOPIC": events_topic or f"{prefix}.events.{token}",
        "PREFSTREAM_PROFILES_TOPIC": f"{prefix}.profiles.{token}",
        "PREFSTREAM_DLQ_TOPIC": f"{prefix}.dlq.{token}",
        "PREFSTREAM_FAILURES_TOPIC": f"{prefix}.failures.{token}",
        "PREFSTREAM_UPDATES_TOPIC": f"{prefix}.updates.{token}",
        "PREFSTREAM_APP_ID": f"{prefix}-{token}",
        "PREFSTREAM_LOG_LEVEL": "warning",
    }


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def delete_topics(bootstrap: str, prefix_of: dict[str, str]) -> None:
    """Delete the topics of one group (and its internal ones): a benchmark leaves the shared broker clean."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        app_id = prefix_of["PREFSTREAM_APP_ID"]
        mine = {v for k, v in prefix_of.items() if k.endswith("_TOPIC")}
        names = [t for t in admin.list_topics() if t in mine or t.startswith(app_id + "-")]
        if names:
            with contextlib.suppress(Exception):
                admin.delete_topics(names)
    finally:
        admin.close()


def close_clients() -> None:
    while OPEN_CLIENTS:
        with contextlib.suppress(Exception):
            OPEN_CLIENTS.pop().close()


def group_members(bootstrap: str, group: str, topic: str) -> dict[str, list[int]]:
    """The partitions of `topic` each member of faust group `group` holds, by the member's web URL (the
    worker's `url`); empty while the group is not stable."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        desc = admin.describe_groups([group])[group]
    finally:
        admin.close()
    if desc["group_state"] != "Stable":
        return {}
    out = {}
    for member in desc["members"]:
        # faust's subscription metadata carries the member's web URL (its canonical_url).
        found = re.search(r'"url":\s*"([^"]+)"', str(member.get("member_metadata", "")))
        assigned = (member.get("member_assignment") or {}).get("assigned_partitions") or []
        url = found.group(1) if found else member["member_id"]
        out[url] = sorted(p for a in assigned if a["topic"] == topic for p in a["partitions"])
    return out


def group_assignment(bootstrap: str, group: str, topic: str) -> list[list[int]]:
    """The partitions of `topic` each member of consumer group `group` holds (empty while rebalancing)."""
    return list(group_members(bootstrap, group, topic).values())


class BenchWorker(Worker):
    """A worker process started with any command (default: `prefstream worker`, as deployed)."""

    def __init__(self, env: dict[str, str], name: str, workdir: Path, cmd: list[str] | None = None) -> None:
        super().__init__(env, name, workdir)
        self.cmd = cmd or [sys.executable, "-m", "prefstream.cli", "worker"]

    def start(self) -> BenchWorker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        if self.proc is not None:  # what the worker started (a vLLM engine core) goes with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


# --- reading the results -------------------------------------------------------------------------


class ProfileTimes:
    """When each event id first appeared in a published profile (the record's timestamp, wall clock s).

    Works with any backend whose summary is a ledger of event ids (`ledger`, and the benchmarks' vllm
    double). Also counts the profile records (updates) and the events each folded.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      auto_offset_reset="earliest", consumer_timeout_ms=200)  # fmt: skip
        parts: set[int] = set()
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            parts = self.consumer.partitions_for_topic(topic) or set()
            if not parts:
                time.sleep(0.2)
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        self.first_seen: dict[str, float] = {}
        self.updates: list[tuple[float, int]] = []  # (record time, events folded by that update)

    def poll(self) -> int:
        """Read what is new; returns how many events are in profiles so far."""
        batch = self.consumer.poll(timeout_ms=300, max_records=5000)
        for msgs in batch.values():
            for rec in msgs:
                if rec.value is None:
                    continue
                at = rec.timestamp / 1000
                profile = decode_profile(rec.value)
                self.updates.append((at, profile.update_events))
                for eid in parse_ledger(profile.summary):
                    self.first_seen.setdefault(eid, at)
        return len(self.first_seen)

    def wait_for(self, count: int, timeout: float, what: str, alive: Callable[[], bool] = lambda: True) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s: {what} ({len(self.first_seen)}/{count} events)")
            if not alive():
                raise RuntimeError(f"a worker exited while waiting for {what}")

    def close(self) -> None:
        self.consumer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) of `values`, in their unit, rounded to ms when seconds."""
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
    s = sorted(values)

    def rank(q: float) -> float:
        return round(s[min(len(s) - 1, max(0, int(q * len(s) + 0.5) - 1))], 3)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "n": len(s)}


# --- running and reporting -----------------------------------------------------------------------


def alternate(arms: dict[str, Callable[[int], dict[str, Any]]], reps: int) -> dict[str, list[dict[str, Any]]]:
    """Run every arm once per repetition, in turn (A B A B ...); each call returns that run's figures."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in arms}
    for rep in range(reps):
        for name, arm in arms.items():
            started = time.monotonic()
            figures = arm(rep)
            runs[name].append(figures)
            shown = ", ".join(f"{k} {v}" for k, v in figures.items() if isinstance(v, (int, float)))
            print(f"  rep {rep + 1}/{reps} {name}: {shown} ({time.monotonic() - started:.0f} s)", flush=True)
    return runs


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def add_run_flags(p: Any) -> None:
    """Flags every benchmark has: repetitions, smoke size, where the results go."""
    p.add_argument("--reps", type=int, default=3, help="repetitions of each arm (median reported)")
    p.add_argument("--quick", action="store_true", help="smoke size, 1 repetition: checks the script, not a figure")
    p.add_argument("--results", type=Path, default=RESULTS, help="results root (default: bench/results)")


def write_results(name: str, payload: dict[str, Any], plot: Callable[[Any], None] | None = None,
                  root: Path = RESULTS) -> Path:  # fmt: skip
    """Write <root>/<name>/<name>.json (and .png when matplotlib is installed: the `bench` extra)."""
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print(f"(no plot: matplotlib is not installed; `uv pip install -e '.[bench]'`)", file=sys.stderr)
        else:
            fig = plt.figure(figsize=(7, 4.2))
            plot(fig)
            fig.text(0.01, 0.01, describe(payload["machine"]), fontsize=6, color="gray")
            fig.tight_layout(rect=(0, 0.03, 1, 1))
            fig.savefig(out / f"{name}.png", dpi=110)
            plt.close(fig)
    print(f"results: {out / (name + '.json')}")
    return out


def ratio_line(name: str, value: float) -> str:
    line = f"RATIO {name} {value:.3f}"
    print(line, flush=True)
    return line


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
