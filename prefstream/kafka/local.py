"""A real Apache Kafka broker (KRaft) on loopback, built from Maven Central artifacts.

No tarball and no container: `fetch()` resolves the pinned broker's runtime jars with Maven
(`--strict-checksums`, so every artifact is checked against Maven Central's published checksum) into
a cache; the second run is offline. `start()` formats KRaft storage the first time a root is used
(and again only when asked to `reset`), so a stopped broker restarts with its topics and offsets;
it runs one JVM per node in its own process session, recording what it started in
`<root>/cluster.json`; `stop()` stops exactly those processes. Used by `prefstream kafka up/down`,
the demo and the test session.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from prefstream.errors import KafkaSetupError

log = structlog.get_logger(__name__)

KAFKA_VERSION = "4.1.1"
HERE = Path(__file__).resolve().parent
STATE_FILE = "cluster.json"
SECURITY_FILE = "security.json"  # which SCRAM user the data was formatted with (never the password)
SCRAM_MECHANISM = "SCRAM-SHA-512"


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
class LocalSecurity:
    """Opt-in secure mode, for tests of prefstream's Kafka security settings.

    Clients reach each node on a SASL_SSL listener (SCRAM-SHA-512, TLS with a throwaway CA made for
    127.0.0.1/localhost under `<root>/tls`); the SCRAM user is created when the storage is formatted.
    The inter-broker and controller listeners stay PLAINTEXT on loopback, on ports no client is told
    about, and their principal (User:ANONYMOUS) is the super user. With `acls`, the StandardAuthorizer
    is on and the SCRAM user may do only what ACLs allow: grant them through `admin_bootstrap_servers`.
    """

    username: str = "prefstream"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    acls: bool = True

    def __post_init__(self) -> None:
        # kafka-storage parses `SCRAM-SHA-512=[name=...,password=...]`: keep both free of its syntax.
        for what, value in (("user name", self.username), ("password", self.password)):
            if not re.fullmatch(r"[A-Za-z0-9._@+-]{1,128}", value):
                raise KafkaSetupError(f"the local broker's SCRAM {what} may use only letters, digits and ._@+-")


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int  # the clients' listener: PLAINTEXT, or SASL_SSL in secure mode
    controller_port: int
    pid: int = 0
    internal_port: int = 0  # secure mode: the PLAINTEXT inter-broker listener (0: none, `port` is it)


@dataclass(frozen=True)
class LocalCluster:
    """What `start()` started: enough to reach it and to stop exactly it."""

    root: Path
    nodes: tuple[Node, ...]
    reused: bool = False  # it was already running: `start()` started nothing
    kept_data: bool = False  # it was started on data formatted by an earlier run
    ca_file: Path | None = None  # secure mode: the CA that signed the brokers' certificates

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect (the SASL_SSL listener in secure mode)."""
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def admin_bootstrap_servers(self) -> str:
        """The PLAINTEXT listener of the cluster's own super user: readiness checks, granting ACLs in tests."""
        return ",".join(f"127.0.0.1:{n.internal_port or n.port}" for n in self.nodes)

    @property
    def secure(self) -> bool:
        return self.ca_file is not None

    def node_dir(self, node: Node) -> Path:
        return self.root / f"node-{node.node_id}"

    def save(self) -> None:
        state = {"version": KAFKA_VERSION, "nodes": [asdict(n) for n in self.nodes],
                 "ca_file": str(self.ca_file) if self.ca_file else None}  # fmt: skip
        tmp = self.root / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.rename(self.root / STATE_FILE)

    @classmethod
    def load(cls, root: Path) -> LocalCluster | None:
        try:
            state = json.loads((root / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        ca_file = state.get("ca_file")
        return cls(root=root, nodes=tuple(Node(**n) for n in state["nodes"]), ca_file=Path(ca_file) if ca_file else None)


def make_tls(tls_dir: Path) -> tuple[Path, Path]:
    """A throwaway CA and a broker certificate for 127.0.0.1/localhost: (ca.pem, broker.pem). Kept once made.

    `broker.pem` holds the certificate chain and the unencrypted PKCS#8 key, which Kafka reads with
    `ssl.keystore.type=PEM`. `cryptography` comes with faust-streaming (both locks pin it).
    """
    ca_path, broker_path = tls_dir / "ca.pem", tls_dir / "broker.pem"
    if ca_path.exists() and broker_path.exists():
        return ca_path, broker_path
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
             *, ca: bool) -> x509.Certificate:  # fmt: skip
        builder = (
            x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if not ca:
            sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, broker_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert("prefstream local test CA", ca_key, "prefstream local test CA", ca_key, ca=True)
    broker_cert = cert("localhost", broker_key, "prefstream local test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    tls_dir.mkdir(parents=True, exist_ok=True)
    key_pem = broker_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    broker_path.write_bytes(broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem) + key_pem)
    broker_path.chmod(0o600)
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    return ca_path, broker_path


def _security_properties(node: Node, broker_pem: Path, security: LocalSecurity) -> dict[str, object]:
    """Secure mode: clients on SASL_SSL/SCRAM-SHA-512; BROKER and CONTROLLER stay PLAINTEXT on loopback."""
    lines: dict[str, object] = {
        "listeners": f"SASL_SSL://127.0.0.1:{node.port},BROKER://127.0.0.1:{node.internal_port},"
                     f"CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{node.port},BROKER://127.0.0.1:{node.internal_port}",
        "inter.broker.listener.name": "BROKER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,BROKER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": broker_pem,
        "ssl.client.auth": "none",
    }  # fmt: skip
    if security.acls:
        lines.update({
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # The PLAINTEXT listeners' principal: the brokers and controllers themselves.
            "super.users": "User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        })  # fmt: skip
    return lines


def _properties(
    node: Node, nodes: tuple[Node, ...], log_dir: Path, security: tuple[LocalSecurity, Path] | None = None
) -> str:
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    rf = min(3, len(nodes))
    lines: dict[str, object] = {
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
    if security is not None:
        lines.update(_security_properties(node, security[1], security[0]))
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


def is_running(pid: int, root: Path) -> bool:
    """True when `pid` is alive and a broker JVM of the cluster under `root`."""
    return _alive(pid) and _ours(pid, root.resolve())


def _accepts(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_ready(
    bootstrap_servers: str, brokers: int, timeout: float = 120.0, pids: tuple[int, ...] = (), **client: Any
) -> None:
    """Wait until the cluster answers metadata requests with all `brokers` registered.

    `client`: extra KafkaAdminClient arguments, e.g. `prefstream.kafka.security.kafka_python_kwargs(...)`.
    """
    from kafka import KafkaAdminClient  # imported here: `prefstream --help` stays light
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    first = bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    last = f"nothing accepted connections at {first}"
    while time.monotonic() < deadline:
        dead = [p for p in pids if not _alive(p)]
        if dead:
            raise KafkaSetupError(f"broker process(es) {dead} exited during start-up")
        if _accepts(int(port), host.strip("[]") or "127.0.0.1"):
            try:
                admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000, **client)
                try:
                    found = len(admin.describe_cluster()["brokers"])
                    if found >= brokers:
                        return
                    last = f"{found} of {brokers} brokers registered"
                finally:
                    admin.close()
            except KafkaError as exc:
                last = f"connections open but the broker does not answer Kafka requests ({type(exc).__name__})"
        time.sleep(0.3)
    raise KafkaSetupError(f"Kafka at {bootstrap_servers} not ready after {timeout:g}s: {last}")


def _read_meta(node_dir: Path) -> dict[str, str] | None:
    """The `meta.properties` KRaft's format wrote into a node's log dir, or None when not formatted."""
    try:
        text = (node_dir / "data" / "meta.properties").read_text()
    except FileNotFoundError:
        return None
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _formatted_cluster_id(root: Path, node_ids: list[int]) -> str | None:
    """The cluster id recorded on disk under `root`, or None when no node there is formatted yet.

    Raises when the data on disk cannot be restarted as the planned cluster (another node count, a
    half-formatted or mixed set of nodes): starting over silently would lose it, so the user decides.
    """
    metas = {int(d.name.split("-", 1)[1]): _read_meta(d) for d in root.glob("node-*") if d.name[5:].isdigit()}
    formatted = {nid: meta for nid, meta in metas.items() if meta is not None}
    if not formatted:
        return None
    cluster_ids = {meta.get("cluster.id") for meta in formatted.values()}
    if sorted(formatted) != sorted(node_ids) or len(cluster_ids) != 1 or None in cluster_ids:
        raise KafkaSetupError(
            f"{root} holds data of a cluster with node(s) {sorted(formatted)}, not {sorted(node_ids)}; "
            f"start it with --nodes {len(formatted)}, or wipe it with `prefstream kafka up --reset`"
        )
    return str(cluster_ids.pop())


def _check_formatted_user(root: Path, security: LocalSecurity, fresh: bool) -> None:
    """Data formatted earlier must already hold this SCRAM user (it is created only at format time)."""
    if fresh:
        return
    with contextlib.suppress(FileNotFoundError, ValueError):
        if json.loads((root / SECURITY_FILE).read_text()).get("scram_user") == security.username:
            return
    raise KafkaSetupError(
        f"{root} holds data formatted without the SCRAM user {security.username!r}; start it with reset=True"
    )


def has_data(root: Path) -> bool:
    """True when a node under `root` is formatted: `start()` would restart on its data."""
    return any(_read_meta(d) is not None for d in root.glob("node-*"))


def wipe(root: Path) -> None:
    """Delete every node's data under `root` (`kafka up --reset`). The cluster must be stopped."""
    for node_dir in root.glob("node-*"):
        shutil.rmtree(node_dir, ignore_errors=True)
    log.info("kafka.wiped", root=str(root))


def start(
    root: Path,
    *,
    nodes: int = 1,
    ports: list[int] | None = None,
    heap: str = "512m",
    timeout: float = 120.0,
    reset: bool = False,
    security: LocalSecurity | None = None,
) -> LocalCluster:
    """Start (or reuse) a local cluster rooted at `root`. Ports default to free ones.

    Data under `root` is kept: a root formatted before starts with its topics and offsets. `reset`
    stops the cluster if it runs and wipes its data first. `security` starts it in secure mode
    (see `LocalSecurity`); data formatted without that SCRAM user needs a `reset`.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    existing = LocalCluster.load(root)
    if existing is not None:
        if not reset and all(_alive(n.pid) and _ours(n.pid, root) for n in existing.nodes):
            wait_ready(existing.admin_bootstrap_servers, len(existing.nodes), timeout=timeout)
            return LocalCluster(root=root, nodes=existing.nodes, reused=True, kept_data=True, ca_file=existing.ca_file)
        stop(root)  # a crashed or half-stopped cluster (or a reset): stop what is left, then start
    if reset:
        wipe(root)
    lib = fetch()
    ports = ports or [free_port() for _ in range(nodes)]
    planned = tuple(
        Node(node_id=i + 1, port=p, controller_port=free_port(), internal_port=free_port() if security else 0)
        for i, p in enumerate(ports)
    )
    busy = [n.port for n in planned if _accepts(n.port)]
    if busy:
        raise KafkaSetupError(f"port(s) {busy} already in use; stop what holds them or pick other ports")
    cluster_id = _formatted_cluster_id(root, [n.node_id for n in planned])
    fresh = cluster_id is None
    if fresh:
        wipe(root)  # leftovers of a format that never completed
        (root / SECURITY_FILE).unlink(missing_ok=True)
        cluster_id = subprocess.run(
            _java_cmd(lib, root, "kafka.tools.StorageTool", "random-uuid", heap="256m"),
            capture_output=True, text=True, check=True,
        ).stdout.split()[-1]  # fmt: skip
    tls: tuple[LocalSecurity, Path] | None = None
    ca_file: Path | None = None
    format_args: list[str] = []
    if security is not None:
        _check_formatted_user(root, security, fresh)
        ca_file, broker_pem = make_tls(root / "tls")
        tls = (security, broker_pem)
        # The SCRAM user goes into the bootstrap metadata, so it exists before any listener opens.
        # (The password is on this short-lived command line: acceptable for a throwaway test broker.)
        format_args = ["--add-scram", f"{SCRAM_MECHANISM}=[name={security.username},password={security.password}]"]
    started: list[Node] = []
    for node in planned:
        node_dir = root / f"node-{node.node_id}"
        node_dir.mkdir(parents=True, exist_ok=True)
        config = node_dir / "server.properties"
        # Written at every start: ports may differ from the last run; the data stays where it was.
        config.write_text(_properties(node, planned, node_dir / "data", tls))
        if fresh:
            fmt = subprocess.run(
                _java_cmd(lib, node_dir, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
                          *format_args, heap="256m"),
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if fmt.returncode != 0:
                detail = f"{fmt.stdout}{fmt.stderr}".replace(security.password, "***") if security else fmt.stdout + fmt.stderr
                raise KafkaSetupError(f"formatting node {node.node_id} failed: {detail}")
        with open(node_dir / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                _java_cmd(lib, node_dir, "kafka.Kafka", str(config), heap=heap),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the starting shell; stopped only by stop()
            )  # fmt: skip
        started.append(Node(node.node_id, node.port, node.controller_port, proc.pid, node.internal_port))
    if security is not None and fresh:
        (root / SECURITY_FILE).write_text(json.dumps({"scram_user": security.username}))
    cluster = LocalCluster(root=root, nodes=tuple(started), kept_data=not fresh, ca_file=ca_file)
    cluster.save()
    try:
        wait_ready(cluster.admin_bootstrap_servers, len(started), timeout=timeout, pids=tuple(n.pid for n in started))
    except KafkaSetupError as exc:
        tails = "\n".join(_tail(root / f"node-{n.node_id}" / "stdout.log") for n in started)
        stop(root)
        raise KafkaSetupError(f"{exc}\n{tails}") from None
    log.info(
        "kafka.started", bootstrap_servers=cluster.bootstrap_servers, nodes=len(started), root=str(root),
        kept_data=not fresh,
    )  # fmt: skip
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
    nodes = tuple(
        Node(n.node_id, n.port, n.controller_port, proc.pid, n.internal_port) if n == node else n for n in cluster.nodes
    )
    updated = LocalCluster(root=cluster.root, nodes=nodes, ca_file=cluster.ca_file)
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
