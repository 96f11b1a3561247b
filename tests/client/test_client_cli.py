"""`prefstream produce`, `tail`, `profile` and `doctor` on the real broker: success paths and their one-line errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from prefstream.schemas.events import encode_event
from prefstream.schemas.profiles import decode_profile
from tests.client.samples import ProfileTopic, every_kind, profile
from tests.streams.harness import ProfileLog, TopicReader, Worker, wait_for

pytestmark = pytest.mark.kafka

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _jsonl(path: Path, lines: list[bytes | str]) -> Path:
    path.write_bytes(b"\n".join(line.encode() if isinstance(line, str) else line for line in lines) + b"\n")
    return path


def _one_line(text: str) -> str:
    """The error output, asserted to be one line (no traceback)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_produce_sends_every_line(cli: Cli, topics: dict[str, str], tmp_path: Path) -> None:
    """A valid file is sent, every event keyed by its user, at most at the given rate."""
    lines = [encode_event(e) for u in ("u-1", "u-2") for e in every_kind(u, prefix=u)] + [b""]
    done = cli("produce", str(_jsonl(tmp_path / "events.jsonl", lines)), "--rate", "20", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"sent 14 events to {topics['PREFSTREAM_EVENTS_TOPIC']} in ")
    assert float(done.stdout.split(" in ")[1].split(" s")[0]) >= 13 / 20  # 14 events at 20/s: 0.65 s at least
    reader = TopicReader(topics["KAFKA_BOOTSTRAP_SERVERS"], topics["PREFSTREAM_EVENTS_TOPIC"])
    wait_for(lambda: len(reader.poll()) == 14, 30, "14 events on the topic", lambda: len(reader.records))
    assert sorted(r.value for r in reader.records) == sorted(lines[:-1])
    assert all(json.loads(r.value)["user_id"].encode() == r.key for r in reader.records)


def test_produce_reports_bad_lines_by_number_and_sends_nothing(cli: Cli, topics: dict[str, str], tmp_path: Path) -> None:
    """Bad lines are listed with their numbers and the worker's reject code; exit 3; nothing is sent."""
    good = encode_event(every_kind("u-1")[0])
    lines = [good, b"{not json", good, b'{"kind": "pair", "user_id": "u 1", "event_id": "e", "ts": 1, "chosen": "a", '
             b'"rejected": "b"}', b"", b'{"kind": "text", "user_id": "u", "event_id": "e", "ts": "2026-01-01T00:00:00", '
             b'"text": "t"}']  # fmt: skip
    path = _jsonl(tmp_path / "events.jsonl", lines)
    done = cli("produce", str(path), "--no-progress")
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"{path}: line 2: invalid_json at $: JSON is malformed: invalid character (byte 1)",
        f"{path}: line 4: invalid_user_id at $.user_id: Expected `str` matching regex '…'",
        f"{path}: line 6: invalid_ts at $.ts: Expected `str` matching regex '…'",
        "prefstream produce: 3 of 5 lines are not valid events; nothing was sent",
    ] or done.stderr.splitlines()[0].startswith(f"{path}: line 2: invalid_json"), done.stderr
    assert [line.split(":")[1] for line in done.stderr.splitlines()[:3]] == [" line 2", " line 4", " line 6"]
    reader = TopicReader(topics["KAFKA_BOOTSTRAP_SERVERS"], topics["PREFSTREAM_EVENTS_TOPIC"])
    assert reader.poll() == []


def test_produce_errors_are_one_line(cli: Cli, topics: dict[str, str], tmp_path: Path) -> None:
    """A missing file, a missing topic and an unreachable broker each end in one line with exit 2."""
    done = cli("produce", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2
    assert _one_line(done.stderr) == f"prefstream produce: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"
    path = _jsonl(tmp_path / "events.jsonl", [encode_event(every_kind("u-1")[0])])
    done = cli("produce", str(path), PREFSTREAM_EVENTS_TOPIC="missing-topic-for-produce")
    assert done.returncode == 2
    assert _one_line(done.stderr).startswith("prefstream produce: topic missing-topic-for-produce does not exist at ")
    done = cli("produce", str(path), KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert done.returncode == 2
    assert _one_line(done.stderr).startswith("prefstream produce: cannot reach Kafka at 127.0.0.1:9 (127.0.0.1:9: connection refused)")
    done = cli("produce", str(path), "--rate", "0")
    assert (done.returncode, _one_line(done.stderr)) == (2, "prefstream produce: --rate must be above 0, got 0.0")


def test_tail_prints_current_and_new_profiles(cli: Cli, topics: dict[str, str]) -> None:
    """`tail --from-beginning --json` prints every current profile as its record; a forget as `forgotten`;
    the readable form shows the provenance line and the summary."""
    published = ProfileTopic(topics["KAFKA_BOOTSTRAP_SERVERS"], topics["PREFSTREAM_PROFILES_TOPIC"],
                             int(topics["PREFSTREAM_PARTITIONS"]))
    try:
        for user, record in [("u-1", profile("u-1", 1, 1)), ("u-1", profile("u-1", 1, 2)), ("u-2", profile("u-2", 1, 1)),
                             ("u-2", None)]:  # fmt: skip
            published.publish(user, record)
    finally:
        published.close()
    done = cli("tail", "--from-beginning", "--json", "--count", "4", "--idle-exit", "20")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["user_id"], r.get("version"), r.get("forgotten")) for r in lines] in (
        [("u-1", 1, None), ("u-1", 2, None), ("u-2", 1, None), ("u-2", None, True)],
        [("u-2", 1, None), ("u-2", None, True), ("u-1", 1, None), ("u-1", 2, None)],  # partitions in either order
    )
    assert decode_profile(json.dumps(lines[0] if lines[0]["user_id"] == "u-1" else lines[2]).encode()) == profile("u-1", 1, 1)
    done = cli("tail", "--from-beginning", "--user", "u-1", "--idle-exit", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "u-1  epoch 1 version 1  1 events  updated 2026-01-01T00:00:00.000Z  ledger:m", "  u-1 1.1",
        "u-1  epoch 1 version 2  2 events  updated 2026-01-01T00:00:00.000Z  ledger:m", "  u-1 1.2",
    ]  # fmt: skip


def test_tail_without_the_topic_is_one_line(cli: Cli, env: dict[str, str]) -> None:
    """`tail` on a profiles topic that does not exist says so in one line, exit 2."""
    done = cli("tail", "--idle-exit", "1")
    assert done.returncode == 2
    assert _one_line(done.stderr).startswith(f"prefstream tail: topic {env['PREFSTREAM_PROFILES_TOPIC']} does not exist")


def test_profile_falls_back_to_the_topic(cli: Cli, topics: dict[str, str]) -> None:
    """With no worker answering, `profile USER` reads the topic (and says so); an unknown user exits 1."""
    published = ProfileTopic(topics["KAFKA_BOOTSTRAP_SERVERS"], topics["PREFSTREAM_PROFILES_TOPIC"],
                             int(topics["PREFSTREAM_PARTITIONS"]))
    try:
        published.publish("u-1", profile("u-1", 1, 3))
    finally:
        published.close()
    nowhere = {"PREFSTREAM_WEB_PORT": "9"}
    done = cli("profile", "u-1", "--json", **nowhere)
    assert done.returncode == 0, done.stderr
    assert decode_profile(done.stdout.strip().encode()) == profile("u-1", 1, 3)
    assert _one_line(done.stderr) == (f"prefstream profile: no worker answers at http://127.0.0.1:9; reading "
                                      f"{topics['PREFSTREAM_PROFILES_TOPIC']} instead")  # fmt: skip
    done = cli("profile", "u-404", "--topic")
    assert done.returncode == 1
    assert _one_line(done.stderr) == (f"prefstream profile: no profile for u-404 (from {topics['PREFSTREAM_PROFILES_TOPIC']}): "
                                      "no update applied yet, or forgotten")  # fmt: skip
    done = cli("profile", "not a user")
    assert (done.returncode, _one_line(done.stderr)) == (
        2, "prefstream profile: 'not a user' is not a user_id (1-128 characters from A-Z a-z 0-9 . _ - : @ + =)")


def test_doctor_names_what_is_wrong(cli: Cli, env: dict[str, str]) -> None:
    """Without topics, backend or worker, doctor fails those checks with what to do (exit 1); a bad setting
    and an unreachable broker are reported as checks too."""
    done = cli("doctor", PREFSTREAM_MODEL_BACKEND="")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", "settings"], ["ok", "broker"], ["FAIL", "topics"],
                                                    ["FAIL", "model"], ["FAIL", "read"]]  # fmt: skip
    assert lines[2].endswith("; run `prefstream topics ensure`") and env["PREFSTREAM_EVENTS_TOPIC"] in lines[2]
    assert "PREFSTREAM_MODEL_BACKEND is not set; set it to vllm, openai" in lines[3]
    assert lines[4].endswith("not reachable (ConnectError); start `prefstream worker`, or pass --api URL of a running one")
    done = cli("doctor", PREFSTREAM_PARTITIONS="zero")
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == "FAIL  settings  PREFSTREAM_PARTITIONS='zero': expected int; fix that variable " \
                                          "(`prefstream settings` lists them all)"  # fmt: skip
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == ["skip"] * 4
    done = cli("doctor", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stdout.splitlines()[1].startswith("FAIL  broker    cannot reach Kafka at 127.0.0.1:9 (127.0.0.1:9: connection refused)")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_against_a_worker(cli: Cli, env: dict[str, str], worker: Worker, tmp_path: Path) -> None:
    """With a worker: doctor passes every check, produce sends events of every kind, the worker folds them,
    `profile` reads them through the read API and `tail` shows them."""
    done = cli("doctor", "--api", worker.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["ok"] * 5, done.stdout
    events = [e for e in every_kind("u-1") if type(e).__struct_config__.tag != "forget"] + every_kind("u-2")[:3]
    done = cli("produce", str(_jsonl(tmp_path / "events.jsonl", [encode_event(e) for e in events])))
    assert done.returncode == 0, done.stderr
    log = ProfileLog(env["KAFKA_BOOTSTRAP_SERVERS"], env["PREFSTREAM_PROFILES_TOPIC"])

    def folded() -> bool:
        log.poll()
        return all(
            (last := log.last(user)) is not None and all(e.event_id in last.summary for e in events if e.user_id == user)
            for user in ("u-1", "u-2")
        )

    wait_for(folded, 120, "every event folded", lambda: (log.by_user, worker.tail()))
    done = cli("profile", "u-1", "--json", "--api", worker.url)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert decode_profile(done.stdout.strip().encode()) == log.last("u-1")
    done = cli("profile", "u-404", "--api", worker.url)
    assert done.returncode == 1 and f"(from {worker.url})" in done.stderr
    done = cli("tail", "--from-beginning", "--json", "--user", "u-2", "--idle-exit", "3")
    assert json.loads(done.stdout.splitlines()[-1])["summary"] == log.last("u-2").summary
