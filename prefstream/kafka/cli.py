"""`prefstream kafka up|down|status|wait|fetch`: a local broker for development, demos and tests.

`KAFKA_BOOTSTRAP_SERVERS` decides what `up` does: a remote address is someone else's broker (`up`
waits for it and starts nothing); a loopback address is this machine's, so `up` starts a local broker
on that port unless one already answers there (the `Procfile` and the test suite rely on this).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from prefstream.errors import KafkaSetupError
from prefstream.kafka import local
from prefstream.kafka.security import kafka_python_kwargs
from prefstream.settings import Settings

DEFAULT_PORT = 9092
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "kafka up":
        parser.add_argument("--nodes", type=int, default=1, choices=(1, 3), help="1 node, or 3 for fault tests")
        parser.add_argument(
            "--port", type=int, default=None,
            help="first broker port (default: the port of a loopback KAFKA_BOOTSTRAP_SERVERS, else 9092)",
        )  # fmt: skip
        parser.add_argument("--heap", default="512m", help="JVM heap per broker")
        parser.add_argument(
            "--reset", action="store_true",
            help="wipe the broker's data (every topic and offset) before starting; stops it first if it runs",
        )  # fmt: skip
        parser.add_argument(
            "--foreground", action="store_true", help="stay attached; stop the broker on SIGINT/SIGTERM (Procfile)"
        )
    if command == "kafka wait":
        parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")


def _answers(settings: Settings) -> bool:
    try:
        local.wait_ready(settings.kafka.bootstrap_servers, 1, timeout=3, **kafka_python_kwargs(settings.kafka))
    except KafkaSetupError:
        return False
    return True


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _root(settings: Settings) -> Path:
    return settings.worker.data_dir / "kafka"


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    if args.command == "kafka fetch":
        print(local.fetch())
        return 0
    root = _root(settings)
    if args.command == "kafka up":
        first = settings.kafka.bootstrap_servers.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        named = "KAFKA_BOOTSTRAP_SERVERS" in os.environ
        ours = local.LocalCluster.load(root) is not None
        if named and not ours and host not in LOOPBACK:
            # A remote broker was named: it is someone else's to run; wait for it, start nothing.
            local.wait_ready(settings.kafka.bootstrap_servers, 1, timeout=30, **kafka_python_kwargs(settings.kafka))
            print(f"using the broker at {settings.kafka.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS); nothing started")
            return 0
        if named and not ours and _answers(settings):
            print(f"using the broker already answering at {settings.kafka.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS); "
                  "nothing started")  # fmt: skip
            return 0
        # Otherwise start one: on the named loopback port (the Procfile's case), else on 9092.
        base = args.port or (int(port) if named and port.isdigit() else DEFAULT_PORT)
        ports = [base + 10 * i for i in range(args.nodes)]
        cluster = local.start(root, nodes=args.nodes, ports=ports, heap=args.heap, reset=args.reset)
        verb = "reused the running" if cluster.reused else "started a"
        data = "data kept" if cluster.kept_data else "new data"
        print(f"{verb} local Kafka {local.KAFKA_VERSION} at {cluster.bootstrap_servers} ({data} in {root})", flush=True)
        if cluster.bootstrap_servers != settings.kafka.bootstrap_servers:
            print(f"export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap_servers}", flush=True)
        if args.foreground:
            _wait_for_signal()
            local.stop(root)
        return 0
    if args.command == "kafka wait":
        local.wait_ready(settings.kafka.bootstrap_servers, 1, timeout=args.timeout, **kafka_python_kwargs(settings.kafka))
        return 0
    if args.command == "kafka down":
        stopped = local.stop(root)
        if stopped:
            print(f"stopped the local Kafka; its data stays in {root} (`kafka up --reset` wipes it)")
        else:
            print(f"no local Kafka was started from {root}")
        return 0
    if args.command == "kafka status":
        cluster = local.LocalCluster.load(root)
        if "KAFKA_BOOTSTRAP_SERVERS" in os.environ and (
            cluster is None or cluster.bootstrap_servers != settings.kafka.bootstrap_servers
        ):
            return _status_named(settings, root)
        return _status(root)
    raise AssertionError(args.command)


def _status_named(settings: Settings, root: Path) -> int:
    """The broker KAFKA_BOOTSTRAP_SERVERS names, which `kafka up` did not start from this data dir:
    answering (0) or not (1)."""
    where = f"the broker at {settings.kafka.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
    try:
        local.wait_ready(settings.kafka.bootstrap_servers, 1, timeout=settings.kafka.connect_timeout_s,
                         **kafka_python_kwargs(settings.kafka))  # fmt: skip
    except KafkaSetupError as exc:
        print(f"not answering: {where}; {str(exc).rpartition(': ')[2]}")
        return 1
    print(f"running: {where} answers (not started by `prefstream kafka up` from {root})")
    return 0


def _status(root: Path) -> int:
    """Running (0), or not (1): stopped, stopped unexpectedly, or never started; and whether data is kept."""
    cluster = local.LocalCluster.load(root)
    kept = f"; data kept in {root}" if local.has_data(root) else ""
    if cluster is None:
        print(f"not running{kept}")
        return 1
    gone = [n.pid for n in cluster.nodes if not local.is_running(n.pid, root)]
    if gone:
        print(f"not running: pid(s) {', '.join(map(str, gone))} exited{kept} (`prefstream kafka up` restarts it)")
        return 1
    print(f"running at {cluster.bootstrap_servers} (pids {', '.join(str(n.pid) for n in cluster.nodes)}{kept})")
    return 0
