"""End to end against the real broker: one worker, the ledger backend, every input the issue lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, TopicReader, Worker, dead_letters, wait_for
from tests.streams.scenario import Scenario, versions_never_go_back

PROFILES_TIMEOUT_S = 60.0
USERS = [f"u{i:02d}" for i in range(16)]


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    # A 1 s model call keeps updates in flight long enough to forget a user mid-update.
    return {**test_env, **CI_WORKER_ENV, "PREFSTREAM_PARTITIONS": "3", "PREFSTREAM_LEDGER_DELAY_S": "1.0",
            "PREFSTREAM_LEDGER_CONCURRENCY": "4"}  # fmt: skip


@pytest.mark.timeout(240)
def test_single_worker_end_to_end(env: dict[str, str], worker: Worker) -> None:
    """Profiles list exactly the distinct valid events since the last forget, in order; DLQ holds exactly the
    malformed events; duplicates, wrong partitions and wrong keys are handled; versions never go back."""
    bootstrap, partitions = env["KAFKA_BOOTSTRAP_SERVERS"], int(env["PREFSTREAM_PARTITIONS"])
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], partitions)
    sc = Scenario(producer)
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])

    def settled() -> bool:
        profiles.poll()
        return not sc.mismatches(profiles.by_user)

    # 1. Plain traffic over many users, some through foreign partitioners or wrong keys, with duplicates.
    for round_ in range(3):
        for i, user in enumerate(USERS):
            sc.send(user, wrong_partition=i % 5 == 1, wrong_key=i % 7 == 3, n=2)
            if round_ == 1 and i % 4 == 0:
                sc.resend(user, 0)  # an immediate producer retry
    sc.malformed()
    producer.flush()
    wait_for(settled, PROFILES_TIMEOUT_S, "first profiles", lambda: (sc.mismatches(profiles.by_user), worker.tail()))

    # 2. Forget after an applied update, then new events start a fresh profile; an old event replayed stays out.
    sc.forget("u02")
    sc.send("u02", n=3)
    producer.flush()
    wait_for(settled, PROFILES_TIMEOUT_S, "profile after forget", lambda: sc.mismatches(profiles.by_user))
    sc.resend("u02", 0)  # a pre-forget event, redelivered long after: must not come back

    # 3. Forget while the user's update is in flight (the ledger takes 1 s): that result must not apply.
    sc.send("u05", n=3)
    producer.flush()
    wait_for(lambda: worker.metric("prefstream_updates_in_flight") >= 1, 20, "u05 update in flight")
    sc.forget("u05")
    sc.send("u05", n=2)
    # 4. Late duplicates of events applied long ago.
    for user in USERS[::3]:
        sc.resend(user, 1)
    producer.flush()
    wait_for(settled, PROFILES_TIMEOUT_S, "final profiles", lambda: (sc.mismatches(profiles.by_user), worker.tail()))
    wait_for(lambda: worker.metric("prefstream_events_duplicate_total") >= sc.duplicates_sent, 20,
             "duplicates counted", lambda: worker.metric("prefstream_events_duplicate_total"))  # fmt: skip

    profiles.poll()
    assert not versions_never_go_back(profiles.by_user)
    assert profiles.by_user["u05"].count(None) == 1 and profiles.by_user["u02"].count(None) == 1  # tombstones
    # The in-flight update of u05 was aborted (or, had it finished first, lost the compare-and-set).
    aborted = worker.metric("prefstream_requests_aborted_total", 'cause="forget"')
    stale = worker.metric("prefstream_updates_total", 'outcome="stale"')
    assert aborted + stale >= 1
    assert worker.metric("prefstream_events_duplicate_total") == sc.duplicates_sent

    dlq = TopicReader(bootstrap, env["PREFSTREAM_DLQ_TOPIC"])
    wait_for(lambda: len(dlq.poll()) >= len(sc.malformed_sent), 20, "dead letters")
    letters = dead_letters(dlq)
    assert sorted(d["value"] for d in letters) == sorted(sc.malformed_sent)
    assert all(d["code"] for d in letters)
    rejected = sum(worker.metric("prefstream_events_rejected_total", f'reason="{d["code"]}"') for d in
                   {d["code"]: d for d in letters}.values())  # fmt: skip
    assert rejected == len(sc.malformed_sent) == len(letters)
    assert worker.metric("prefstream_events_repartitioned_total", 'cause="partitioner"') > 0
    assert worker.metric("prefstream_events_repartitioned_total", 'cause="key"') > 0
    _updates_match_profiles(env, profiles)
    _logs_are_json_without_user_text(worker)


def _updates_match_profiles(env: dict[str, str], profiles: ProfileLog) -> None:
    """The updates topic has one distinct record per published (user, epoch, version), repeats identical, each
    naming exactly the events its version added to the one before (ledger summaries list them); no user text."""
    from prefstream.models.backends.ledger import parse_ledger
    from prefstream.schemas.updates import decode_update

    published = {(u, p.epoch, p.version): p for u, recs in profiles.poll().items() for p in recs if p is not None}
    updates = TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_UPDATES_TOPIC"])
    by_key: dict[tuple[str, int, int], bytes] = {}

    def all_read() -> bool:
        for rec in updates.poll():
            key = decode_update(rec.value).dedupe_key
            assert by_key.setdefault(key, rec.value) == rec.value, key  # a repeat is the same record
        return set(by_key) >= set(published)

    wait_for(all_read, 20, "an update record per profile version", lambda: set(published) - set(by_key))
    assert set(by_key) == set(published)
    for (user, epoch, version), raw in by_key.items():
        before = published.get((user, epoch, version - 1))
        assert version == 1 or before is not None, (user, epoch, version)
        added = decode_update(raw).event_ids
        assert parse_ledger(published[(user, epoch, version)].summary) == parse_ledger(before and before.summary) + added
        assert b"answer A for" not in raw and b"which one?" not in raw


def _logs_are_json_without_user_text(worker: Worker) -> None:
    """Every line the worker wrote is a JSON object, faust's own included; none holds user text or a raw
    user id (users appear as `user_ref` hashes)."""
    import json

    lines = worker.log_path.read_text(errors="replace").splitlines()
    assert any('"update_applied"' in line for line in lines), worker.tail()
    for line in lines:
        record = json.loads(line)  # raises on a non-JSON line
        assert isinstance(record, dict), line
        assert "answer A for" not in line and "which one?" not in line, line
        assert not set(USERS) & {str(v) for v in record.values()}, line


@pytest.mark.timeout(120)
def test_read_api_health_and_no_table_endpoints(env: dict[str, str], worker: Worker) -> None:
    """GET /profiles/{user} returns the published profile (404 if none); health answers; faust's raw table
    endpoints, router and (off by default) the inspector are not served; the process title says `prefstream worker` (ps, pgrep, CI's check)."""
    assert worker.proc is not None
    title = Path(f"/proc/{worker.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert title.startswith("prefstream worker -"), title
    bootstrap, partitions = env["KAFKA_BOOTSTRAP_SERVERS"], int(env["PREFSTREAM_PARTITIONS"])
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], partitions)
    sc = Scenario(producer)
    sc.send("reader", n=3)
    producer.flush()
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    wait_for(lambda: not sc.mismatches(profiles.poll()), PROFILES_TIMEOUT_S, "profile")
    status, body = worker.get("/profiles/reader")
    assert status == 200
    from prefstream.schemas.profiles import decode_profile

    assert decode_profile(body) == profiles.last("reader")
    assert worker.get("/profiles/nobody")[0] == 404
    assert worker.get("/livez")[0] == 200 and worker.get("/readyz")[0] == 200
    # The inspector is off unless enabled: its routes are not there either.
    for path in ("/table/meta", "/table/profile/reader", "/router", "/graph", "/performance/", "/inspector",
                 "/inspector/api/users/reader"):  # fmt: skip
        assert worker.get(path)[0] == 404, path
    metrics = worker.get("/metrics")[1].decode()
    assert "reader" not in metrics  # no user ids as labels
    assert worker.metric("prefstream_events_accepted_total") == 3
    assert worker.metric("prefstream_events_per_update_count") >= 1
