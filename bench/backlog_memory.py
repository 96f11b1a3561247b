"""Measure the worker's memory under a backlog while the model hangs (reliability issue, item 5).

Every update hangs until PREFSTREAM_UPDATE_TIMEOUT_S ends it, so nothing is folded and every accepted
event stays pending; one over-full user runs into PREFSTREAM_MAX_PENDING_EVENTS (`backlog_full`). The
worker's RSS is sampled from /proc throughout (see tests/streams/backlog.py).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/backlog_memory.py --users 2000 --events 20000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefstream.kafka import local  # noqa: E402
from tests.streams.backlog import run_backlog  # noqa: E402
from tests.streams.harness import OPEN_CLIENTS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--max-pending", type=int, default=100, help="PREFSTREAM_MAX_PENDING_EVENTS")
    ap.add_argument("--full-extra", type=int, default=50, help="events beyond max-pending for the over-full user")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=2.0, help="PREFSTREAM_UPDATE_TIMEOUT_S")
    ap.add_argument("--hold", type=float, default=20.0, help="seconds to keep sampling after the backlog is in")
    ap.add_argument("--samples", type=Path, help="write the (seconds, KiB) samples here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="prefstream-backlog-") as tmp:
        workdir = Path(tmp)
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        cluster = None if external else local.start(workdir / "kafka")
        token = uuid.uuid4().hex[:8]
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": external or cluster.bootstrap_servers,  # type: ignore[union-attr]
            "PREFSTREAM_PARTITIONS": str(args.partitions), "PREFSTREAM_APP_ID": f"backlog.{token}",
            "PREFSTREAM_EVENTS_TOPIC": f"backlog.events.{token}", "PREFSTREAM_PROFILES_TOPIC": f"backlog.profiles.{token}",
            "PREFSTREAM_DLQ_TOPIC": f"backlog.dlq.{token}", "PREFSTREAM_FAILURES_TOPIC": f"backlog.failures.{token}",
            "PREFSTREAM_UPDATES_TOPIC": f"backlog.updates.{token}",
        }  # fmt: skip
        try:
            figures = run_backlog(env, workdir, users=args.users, events=args.events, max_pending=args.max_pending,
                                  full_extra=args.full_extra, timeout_s=args.timeout, hold_s=args.hold)  # fmt: skip
            print(figures.report())
            if args.samples:
                args.samples.write_text("".join(f"{t:.1f}\t{k}\n" for t, k in figures.samples))
            return 0
        finally:
            while OPEN_CLIENTS:
                OPEN_CLIENTS.pop().close()
            if cluster is not None:
                local.stop(cluster.root)


if __name__ == "__main__":
    raise SystemExit(main())
