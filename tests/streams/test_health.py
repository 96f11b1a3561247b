"""Health signals tell the truth: `/readyz` reflects the broker connection and an assignment, `/livez` the process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from prefstream.kafka import local
from tests.streams.harness import CI_WORKER_ENV, Worker, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
OUTAGE_TIMEOUT_S = 60.0


def readyz(worker: Worker) -> tuple[int, str]:
    try:
        status, body = worker.get("/readyz", timeout=2)
    except OSError as exc:
        return 0, type(exc).__name__
    return status, str(json.loads(body).get("reason", ""))


@pytest.mark.timeout(240)
def test_a_worker_without_partitions_is_not_ready(test_env: dict[str, str], tmp_path: Path) -> None:
    """With one partition and two workers, the one that owns nothing says so on /readyz (503), the owner is ready."""
    env = {**test_env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": "1"}
    a = Worker(env, "a", tmp_path).start()
    b: Worker | None = None
    try:
        a.wait_ready()
        b = Worker(env, "b", tmp_path).start()
        wait_for(lambda: readyz(b) == (503, "no partitions assigned"), 90, "idle worker not ready", lambda: (readyz(b), b.tail()))
        wait_for(lambda: readyz(a) == (200, "ok"), 60, "owner ready again after the rebalance", lambda: readyz(a))
        assert b.get("/livez")[0] == 200
    finally:
        for w in (a, b):
            if w is not None:
                w.kill()


@pytest.mark.timeout(300)
def test_readiness_follows_the_broker(test_env: dict[str, str], tmp_path: Path, unique_name: Callable[[str], str]) -> None:
    """The broker stops: /readyz turns 503 naming it, /livez stays 200; the broker comes back: ready again,
    without a restart."""
    with local.running(tmp_path / "kafka") as cluster:
        env = {**test_env, **CI_WORKER_ENV, "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers}
        worker = Worker(env, "a", tmp_path).start()
        try:
            worker.wait_ready()
            node = cluster.nodes[0]
            local.stop_node(cluster, node)
            wait_for(lambda: readyz(worker)[0] == 503 and readyz(worker)[1].startswith("broker unreachable"),
                     OUTAGE_TIMEOUT_S, "not ready while the broker is down", lambda: (readyz(worker), worker.tail()))  # fmt: skip
            assert worker.alive() and worker.get("/livez")[0] == 200
            restarted = local.restart_node(cluster, node)
            local.wait_ready(restarted.bootstrap_servers, 1)
            wait_for(lambda: readyz(worker) == (200, "ok"), OUTAGE_TIMEOUT_S * 2, "ready again after the broker returned",
                     lambda: (readyz(worker), worker.tail()))  # fmt: skip
        finally:
            worker.kill()
