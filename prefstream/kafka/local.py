"""A real Apache Kafka broker (KRaft) on loopback, built from Maven Central artifacts.

No tarball and no container: `fetch()` resolves the pinned broker's runtime jars with Maven
(`--strict-checksums`, so every artifact is checked against Maven Central's published checksum) into
a cache; the second run is offline. `start()` formats KRaft storage and runs one JVM per node in its
own process session, recording what it started in `<root>/cluster.json`; `stop()` stops exactly
those processes. Used by `prefstream kafka up/down`, the demo and the test session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from prefstream.errors import KafkaSetupError

log = structlog.get_logger(__name__)

KAFKA_VERSION = "4.1.1"
HERE = Path(__file__).resolve().parent
STATE_FILE = "cluster.json"


def cache_root() -> Path:
    """Where fetched jars live: `PREFSTREAM_CACHE_DIR`, else `$XDG_CACHE_HOME/prefstream`, else ~/.cache/prefstream."""
    explicit = os.environ.get("PREFSTREAM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prefstream"


def fetch(cache: Path | None = None) -> Path:
    """Return the directory of the broker's jars, fetching them from Maven Central once."""
    lib = (cache or cache_root()) / f"kafka-{KAFKA_VERSION}" / "lib"
    if (lib / ".complete").exists():
        return lib
    if shutil.which("mvn") is None:
        raise KafkaSetupError("Maven (`mvn`) is needed once to fetch the Kafka jars; install it (apt-get install maven)")
    lib.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="lib-", dir=lib.parent))
    cmd = [
        "mvn", "-B", "-q", "--strict-checksums",
        "-f", str(HERE / "pom.xml"),
        f"-Dmaven.repo.local={lib.parent / 'm2'}",
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    log.info("kafka.fetch", version=KAFKA_VERSION, into=str(lib))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not any(staging.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaSetupError(f"fetching Kafka {KAFKA_VERSION} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    (staging / ".complete").write_text("\n".join(sorted(p.name for p in staging.glob("*.jar"))) + "\n")
    if lib.exists():  # a concurrent fetch won the race; keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(lib)
    return lib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    pid: int = 0


@dataclass(frozen=True)
class LocalCluster:
    """What `start()` started: enough to reach it and to stop exactly it."""

    root: Path
    nodes: tuple[Node, ...]
    reused: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node_dir(self, node: Node) -> Path:
        return self.root / f"node-{node.node_id}"

    def save(self) -> None:
        state = {"version": KAFKA_VERSION, "nodes": [asdict(n) for n in self.nodes]}
        tmp = self.root / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.rename(self.root / STATE_FILE)

    @classmethod
    def load(cls, root: Path) -> LocalCluster | None:
        try:
            state = json.loads((root / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        return cls(root=root, nodes=tuple(Node(**n) for n in state["nodes"]))


def _properties(node: Node, nodes: tuple[Node, ...], log_dir: Path) -> str:
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    rf = min(3, len(nodes))
    lines = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,  # static quorum: one code path for 1 and 3 nodes
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": log_dir,
        # Topics are created on purpose (`prefstream topics ensure`), never by a typo'd producer.
        "auto.create.topics.enable": "false",
        "default.replication.factor": rf,
        "min.insync.replicas": 2 if rf >= 3 else 1,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": 10,  # the default 50 makes a cold start slow on 2 cores
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": 2 if rf >= 3 else 1,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": 2 if rf >= 3 else 1,
        "group.initial.rebalance.delay.ms": 0,
        "log.cleaner.backoff.ms": 1000,
        # How often time-based retention is enforced (Kafka's default: 5 min); it adds to every retention
        # bound in docs/streams.md ("Forget"). Short here so the erasure test sees short retentions work.
        "log.retention.check.interval.ms": 5000,
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def _java_cmd(lib: Path, node_dir: Path, main: str, *args: str, heap: str = "512m") -> list[str]:
    return [
        "java", f"-Xms{heap}" if main == "kafka.Kafka" else "-Xms64m", f"-Xmx{heap}",
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={node_dir}", f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
        "-cp", f"{lib}/*", main, *args,
    ]  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(FileNotFoundError):
        # A zombie (exited, not yet reaped by its parent) counts as gone.
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _ours(pid: int, root: Path) -> bool:
    """True when `pid` is a broker JVM of this cluster (guards against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "kafka.Kafka" in cmdline and str(root) in cmdline


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def wait_ready(bootstrap_servers: str, brokers: int, timeout: float = 120.0, pids: tuple[int, ...] = ()) -> None:
    """Wait until the cluster answers metadata requests with all `brokers` registered."""
    from kafka import KafkaAdminClient  # imported here: `prefstream --help` stays light
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        dead = [p for p in pids if not _alive(p)]
        if dead:
            raise KafkaSetupError(f"broker process(es) {dead} exited during start-up")
        first_port = int(bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
        if _accepts(first_port):
            try:
                admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
                try:
                    if len(admin.describe_cluster()["brokers"]) >= brokers:
                        return
                finally:
                    admin.close()
            except KafkaError as exc:
                last = exc
        time.sleep(0.3)
    raise KafkaSetupError(f"Kafka at {bootstrap_servers} not ready after {timeout:.0f}s (last error: {last})")


def start(
    root: Path,
    *,
    nodes: int = 1,
    ports: list[int] | None = None,
    heap: str = "512m",
    timeout: float = 120.0,
) -> LocalCluster:
    """Start (or reuse) a local cluster rooted at `root`. Ports default to free ones."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    existing = LocalCluster.load(root)
    if existing is not None:
        if all(_alive(n.pid) and _ours(n.pid, root) for n in existing.nodes):
            wait_ready(existing.bootstrap_servers, len(existing.nodes), timeout=timeout)
            return LocalCluster(root=root, nodes=existing.nodes, reused=True)
        stop(root)  # a crashed or half-stopped cluster: clear it and start afresh
    lib = fetch()
    ports = ports or [free_port() for _ in range(nodes)]
    planned = tuple(Node(node_id=i + 1, port=p, controller_port=free_port()) for i, p in enumerate(ports))
    busy = [n.port for n in planned if _accepts(n.port)]
    if busy:
        raise KafkaSetupError(f"port(s) {busy} already in use; stop what holds them or pick other ports")
    cluster_id = subprocess.run(
        _java_cmd(lib, root, "kafka.tools.StorageTool", "random-uuid", heap="256m"),
        capture_output=True, text=True, check=True,
    ).stdout.split()[-1]  # fmt: skip
    started: list[Node] = []
    for node in planned:
        node_dir = root / f"node-{node.node_id}"
        shutil.rmtree(node_dir, ignore_errors=True)
        node_dir.mkdir(parents=True)
        config = node_dir / "server.properties"
        config.write_text(_properties(node, planned, node_dir / "data"))
        fmt = subprocess.run(
            _java_cmd(lib, node_dir, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
                      heap="256m"),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise KafkaSetupError(f"formatting node {node.node_id} failed: {fmt.stdout}{fmt.stderr}")
        with open(node_dir / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                _java_cmd(lib, node_dir, "kafka.Kafka", str(config), heap=heap),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the starting shell; stopped only by stop()
            )  # fmt: skip
        started.append(Node(node.node_id, node.port, node.controller_port, proc.pid))
    cluster = LocalCluster(root=root, nodes=tuple(started))
    cluster.save()
    try:
        wait_ready(cluster.bootstrap_servers, len(started), timeout=timeout, pids=tuple(n.pid for n in started))
    except KafkaSetupError as exc:
        tails = "\n".join(_tail(root / f"node-{n.node_id}" / "stdout.log") for n in started)
        stop(root)
        raise KafkaSetupError(f"{exc}\n{tails}") from None
    log.info("kafka.started", bootstrap_servers=cluster.bootstrap_servers, nodes=len(started), root=str(root))
    return cluster


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def stop_node(cluster: LocalCluster, node: Node, *, kill: bool = False, timeout: float = 30.0) -> None:
    """Stop one node: SIGTERM (a clean shutdown), or SIGKILL when `kill` (a crash)."""
    if not (_alive(node.pid) and _ours(node.pid, cluster.root)):
        return
    os.kill(node.pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(node.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(node.pid):
        os.kill(node.pid, signal.SIGKILL)
        while _alive(node.pid):
            time.sleep(0.05)


def restart_node(cluster: LocalCluster, node: Node, *, heap: str = "512m") -> LocalCluster:
    """Start a stopped node again on its old ports and data (for fault tests)."""
    lib = fetch()
    node_dir = cluster.node_dir(node)
    with open(node_dir / "stdout.log", "ab") as out:
        proc = subprocess.Popen(
            _java_cmd(lib, node_dir, "kafka.Kafka", str(node_dir / "server.properties"), heap=heap),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    nodes = tuple(Node(n.node_id, n.port, n.controller_port, proc.pid) if n == node else n for n in cluster.nodes)
    updated = LocalCluster(root=cluster.root, nodes=nodes)
    updated.save()
    return updated


def stop(root: Path, timeout: float = 15.0) -> bool:
    """Stop exactly the nodes recorded under `root`. Returns False when nothing was recorded."""
    root = root.resolve()
    cluster = LocalCluster.load(root)
    if cluster is None:
        return False
    for node in cluster.nodes:  # signal all first so the nodes shut down in parallel
        if _alive(node.pid) and _ours(node.pid, root):
            os.kill(node.pid, signal.SIGTERM)
    for node in cluster.nodes:
        stop_node(cluster, node, timeout=timeout)
    (root / STATE_FILE).unlink(missing_ok=True)
    log.info("kafka.stopped", root=str(root), nodes=len(cluster.nodes))
    return True


@contextlib.contextmanager
def running(root: Path, **kwargs: object) -> Iterator[LocalCluster]:
    """A cluster for the duration of a `with` block (tests, the demo)."""
    cluster = start(root, **kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        if not cluster.reused:
            stop(root)
