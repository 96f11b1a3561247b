"""Failed updates: retries with backoff, degradation, parking with the evidence kept, and `prefstream redrive`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefstream.models.backends.ledger import PROMPT_VERSION as LEDGER_PROMPT_VERSION
from prefstream.schemas.failures import decode_failure
from prefstream.streams.partitioning import partition_for
from tests.streams.harness import CI_WORKER_ENV, ROOT, ProfileLog, Producer, TopicReader, Worker, wait_for
from tests.streams.scenario import Scenario

INSPECTOR_TOKEN = "failures-test-token-9b2e44"


def _inspector_shows_the_park(worker: Worker, pending_ids: list[str]) -> None:
    """The inspector's view of a parked user: parked after 5 attempts with the last reason, its evidence pending."""
    from tests.streams.browser import browser_context, look_up

    with browser_context(("ops", INSPECTOR_TOKEN)) as context:
        page = look_up(context, worker.url, "bad-1")
        badge = page.locator("[data-testid=parked]")
        assert badge.count() == 1 and "5 failed attempts" in badge.inner_text() and "engine_error" in badge.inner_text()
        rows = page.locator("[data-testid=pending-event] td.id").all_text_contents()
        assert rows == pending_ids and page.locator("[data-testid=version]").count() == 0


@pytest.mark.timeout(180)
def test_failing_user_is_parked_then_redriven(test_env: dict[str, str], tmp_path: Path) -> None:
    """A user whose updates keep failing gets one failure record per attempt (no user text), degraded
    (halved) batches after the retry limit, is parked with its evidence kept, and `prefstream redrive`
    applies it; other users are not held up. The inspector shows the parked user, its failures and its kept
    evidence, in a real browser."""
    env = {**test_env, **CI_WORKER_ENV, "PREFSTREAM_LEDGER_FAIL_USER_PREFIX": "bad-", "PREFSTREAM_LEDGER_FAIL_TIMES": "5",
           "PREFSTREAM_RETRY_LIMIT": "2", "PREFSTREAM_DEGRADED_ATTEMPTS": "2", "PREFSTREAM_INSPECTOR_ENABLED": "true",
           "PREFSTREAM_INSPECTOR_TOKEN": INSPECTOR_TOKEN}  # fmt: skip
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    worker = Worker(env, "a", tmp_path).start()
    try:
        worker.wait_ready()
        producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], int(env["PREFSTREAM_PARTITIONS"]))
        sc = Scenario(producer)
        sc.send("bad-1", n=4)
        sc.send("good-1", n=4)
        producer.flush()
        profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
        wait_for(lambda: "good-1" in profiles.poll(), 30, "good user's profile")
        wait_for(lambda: worker.metric("prefstream_users_parked") == 1, 60, "bad user parked", worker.tail)

        failures = TopicReader(bootstrap, env["PREFSTREAM_FAILURES_TOPIC"])
        wait_for(lambda: len(failures.poll()) >= 6, 20, "failure records")
        records = [decode_failure(r.value) for r in failures.poll()]
        assert [(r.reason, r.attempts) for r in records] == [("engine_error", a) for a in range(1, 6)] + [("parked", 5)]
        assert {r.user_id for r in records} == {"bad-1"} and all(r.epoch == 1 and r.base_version == 0 for r in records)
        # One attempt and two retries at full size, then two degraded attempts with half the batch.
        assert [r.event_count for r in records[:5]] == [4, 4, 4, 2, 2]
        raw = b"".join(r.value for r in failures.poll())
        assert b"answer A" not in raw and b"which one" not in raw  # no user text
        # The records name the backend's model and prompt version (issue #9: they were empty).
        assert {(r.model, r.prompt_version, r.backend) for r in records} == {("ledger", LEDGER_PROMPT_VERSION, "ledger")}
        assert "bad-1" not in profiles.poll()
        assert worker.metric("prefstream_update_failures_total", 'reason="engine_error"') == 5
        _inspector_shows_the_park(worker, sc.expected["bad-1"])

        # The parked user is visible (issue #9): in the profile's 404, in /users/{id}, and in `prefstream parked`.
        status, body = worker.get("/profiles/bad-1")
        state = json.loads(body)["state"]
        assert status == 404 and (state["parked"], state["pending_events"], state["failing"]) == (True, 4, True)
        status, body = worker.get("/users/bad-1")
        state = json.loads(body)
        assert status == 200 and (state["parked"], state["attempts"], state["last_failure"]) == (True, 5, "engine_error")
        assert json.loads(worker.get("/users/good-1")[1])["parked"] is False

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "prefstream.cli", *args, "--api", worker.url],
                                  env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)  # fmt: skip

        listed = cli("parked")
        assert listed.returncode == 0, listed.stderr
        partition = partition_for("bad-1", int(env["PREFSTREAM_PARTITIONS"]))
        assert listed.stdout.splitlines()[1].split() == ["bad-1", str(partition), "4", "5", "engine_error"]
        assert listed.stdout.splitlines()[-1].startswith("1 parked user(s)")
        nobody = cli("redrive", "nobody")
        assert nobody.returncode == 1, nobody.stdout + nobody.stderr
        assert nobody.stdout.strip() == "redrive: nobody: not parked; nothing to redrive (`prefstream parked` lists parked users)"

        result = cli("redrive")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "redrive: 1 parked user(s) retried (bad-1); their pending events go to the model again"
        wait_for(lambda: not sc.mismatches(profiles.poll()), 30, "redriven profile", lambda: sc.mismatches(profiles.by_user))
        assert profiles.last("bad-1") is not None and profiles.last("bad-1").update_events == 4
        assert worker.metric("prefstream_users_parked") == 0
    finally:
        worker.stop()
