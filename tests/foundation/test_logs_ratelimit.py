"""Rate limit of repeated stdlib log records (`prefstream.logs.RepeatFilter`).

Unit tests drive the filter with a fake clock. The end-to-end test runs a real worker against its own
throwaway broker, stops the broker and bounds how many lines the worker writes during the outage.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import time
from pathlib import Path

import pytest

from prefstream import logs
from prefstream.logs import RepeatFilter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str = "aiokafka.conn", level: int = logging.WARNING, msg: str = "connect to %s failed", *args: object):
    return logging.LogRecord(name, level, __file__, 1, msg, args or ("broker:9092",), None)


def passes(f: RepeatFilter, rec: logging.LogRecord) -> bool:
    return bool(f.filter(rec))


def test_first_occurrence_passes_and_repeats_in_the_window_are_suppressed() -> None:
    clock = FakeClock()
    f = RepeatFilter(window_s=10, clock=clock)
    assert passes(f, record())
    for i in range(50):
        clock.now += 0.1
        assert not passes(f, record("aiokafka.conn", logging.WARNING, "connect to %s failed", f"host{i}"))


def test_first_record_after_the_window_passes_with_the_suppressed_count() -> None:
    clock = FakeClock()
    f = RepeatFilter(window_s=10, clock=clock)
    first = record()
    assert passes(f, first)
    assert not hasattr(first, "suppressed")
    for _ in range(7):
        clock.now += 1
        assert not passes(f, record())
    clock.now += 3  # 10 s after the first one passed
    later = record()
    assert passes(f, later)
    assert later.suppressed == 7  # type: ignore[attr-defined]
    # The window restarts at the record that passed; the count restarts at zero.
    clock.now += 5
    assert not passes(f, record())
    clock.now += 5
    again = record()
    assert passes(f, again)
    assert again.suppressed == 1  # type: ignore[attr-defined]
    # Nothing suppressed since: the next passing record carries no count.
    clock.now += 10
    quiet = record()
    assert passes(f, quiet)
    assert not hasattr(quiet, "suppressed")


def test_kinds_are_independent_by_template_logger_and_level() -> None:
    clock = FakeClock()
    f = RepeatFilter(window_s=10, clock=clock)
    assert passes(f, record("aiokafka.conn", logging.WARNING, "connect to %s failed"))
    assert passes(f, record("aiokafka.conn", logging.WARNING, "metadata for %s failed"))
    assert passes(f, record("kafka.conn", logging.WARNING, "connect to %s failed"))
    assert passes(f, record("aiokafka.conn", logging.INFO, "connect to %s failed"))
    assert passes(f, record("aiokafka.conn", logging.ERROR, "connect to %s failed"))
    for name, level, msg in [
        ("aiokafka.conn", logging.WARNING, "connect to %s failed"),
        ("aiokafka.conn", logging.WARNING, "metadata for %s failed"),
        ("kafka.conn", logging.WARNING, "connect to %s failed"),
        ("aiokafka.conn", logging.INFO, "connect to %s failed"),
        ("aiokafka.conn", logging.ERROR, "connect to %s failed"),  # third-party errors are limited too
    ]:
        assert not passes(f, record(name, level, msg))


def test_errors_of_our_own_packages_are_never_suppressed() -> None:
    clock = FakeClock()
    f = RepeatFilter(window_s=10, clock=clock)
    for name in ("prefstream", "prefstream.kafka.local", "prefstream.streams.app", "prefstream.models.vllm", "prefstream.schemas.events"):
        for level in (logging.ERROR, logging.CRITICAL):
            for _ in range(20):
                assert passes(f, record(name, level, "update failed %s"))
    # Their warnings are rate-limited like anyone's; a look-alike name is not ours.
    assert passes(f, record("prefstream.streams.app", logging.WARNING, "slow %s"))
    assert not passes(f, record("prefstream.streams.app", logging.WARNING, "slow %s"))
    assert passes(f, record("streamsx", logging.ERROR, "boom %s"))
    assert not passes(f, record("streamsx", logging.ERROR, "boom %s"))


def test_key_cap_holds_and_forgets_the_least_recently_seen() -> None:
    clock = FakeClock()
    f = RepeatFilter(window_s=10, max_keys=4, clock=clock)
    for i in range(100):
        assert passes(f, record("lib", logging.WARNING, f"template {i} %s"))
        assert len(f._kinds) <= 4
    # The oldest kinds were forgotten (they pass again, as new); the newest are still limited.
    assert not passes(f, record("lib", logging.WARNING, "template 99 %s"))
    assert passes(f, record("lib", logging.WARNING, "template 0 %s"))
    assert len(f._kinds) == 4


def test_window_zero_disables() -> None:
    f = RepeatFilter(window_s=0, clock=FakeClock())
    assert all(passes(f, record()) for _ in range(10))


def test_non_string_messages_are_keyed_by_kind_not_text() -> None:
    f = RepeatFilter(window_s=10, clock=FakeClock())
    assert passes(f, logging.LogRecord("lib", logging.WARNING, __file__, 1, OSError("refused 1"), None, None))
    assert not passes(f, logging.LogRecord("lib", logging.WARNING, __file__, 1, OSError("refused 2"), None, None))


def test_the_worker_logging_config_installs_the_filter_and_renders_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dictConfig faust's Worker applies puts the filter on its handler; `suppressed` is a JSON field."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logging.config.dictConfig(logs.stdlib_logging_config("json", "info", repeat_window_s=0.05))
        assert all(any(isinstance(f, RepeatFilter) for f in h.filters) for h in root.handlers)
        lib = logging.getLogger("aiokafka.test_ratelimit")
        for i in range(20):
            lib.warning("connect to %s failed", f"host{i}")
        time.sleep(0.06)  # the real clock: the handler's filter is built by dictConfig
        lib.warning("connect to %s failed", "last")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["connect to host0 failed", "connect to last failed"]
        assert "suppressed" not in lines[0]
        assert lines[1]["suppressed"] == 19
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_configure_keeps_the_window_for_later_configs() -> None:
    saved = logs._repeat_window_s
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure("console", "info", 3.5)
        handlers = logs.stdlib_logging_config("json", "info")["handlers"]
        assert handlers["default"]["repeat_window_s"] == 3.5  # type: ignore[index]
        logs.configure("console", "info")  # streams.cli configures again without a window: kept
        assert [f.window_s for f in root.handlers[0].filters if isinstance(f, RepeatFilter)] == [3.5]
    finally:
        logs._repeat_window_s = saved
        logs.configure("console", "info")
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


# --- end to end ----------------------------------------------------------------------------------

OUTAGE_S = 20.0
MAX_OUTAGE_LINES = 150


@pytest.mark.kafka
@pytest.mark.slow
def test_a_worker_stays_quiet_while_its_broker_is_down(tmp_path: Path) -> None:
    """Worker up against its own broker; broker stopped; the worker's lines over 20 s stay bounded.

    For the figure without the filter: `PREFSTREAM_LOG_REPEAT_WINDOW_S=0` (the worker inherits the
    environment) and `-s` to see the printed count (this test then fails its bound).
    """
    from prefstream.kafka import local
    from tests.streams.harness import CI_WORKER_ENV, START_TIMEOUT_S, Worker, wait_for

    with local.running(tmp_path / "kafka") as cluster:
        env = {
            **CI_WORKER_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
            "PREFSTREAM_EVENTS_TOPIC": "ratelimit.events",
            "PREFSTREAM_PROFILES_TOPIC": "ratelimit.profiles",
            "PREFSTREAM_DLQ_TOPIC": "ratelimit.dlq",
            "PREFSTREAM_FAILURES_TOPIC": "ratelimit.failures",
            "PREFSTREAM_UPDATES_TOPIC": "ratelimit.updates",
            "PREFSTREAM_APP_ID": "ratelimit-app",
            "PREFSTREAM_PARTITIONS": "2",
            "PREFSTREAM_LOG_FORMAT": "json",
        }
        worker = Worker(env, "ratelimit", tmp_path).start()
        try:
            worker.wait_ready()
            # /readyz only speaks for the model backend; faust logs "Ready" once it joined the group and
            # recovered its tables: the outage then hits a running worker, as in production.
            wait_for(lambda: bool(worker.log_lines("[^Worker]: Ready")), START_TIMEOUT_S, "faust Ready", worker.tail)
            for node in cluster.nodes:
                local.stop_node(cluster, node)
            start = worker.log_path.stat().st_size
            time.sleep(OUTAGE_S)
            assert worker.alive(), worker.tail()
            with worker.log_path.open("rb") as fh:
                fh.seek(start)
                outage = fh.read().decode(errors="replace").splitlines()
        finally:
            worker.kill()
    (tmp_path / "outage.log").write_text("\n".join(outage) + "\n")  # kept for a look after a failure
    for line in outage:
        json.loads(line)  # every line is one JSON object (raises on anything else)
    print(f"worker log lines during a {OUTAGE_S:.0f} s broker outage: {len(outage)}")
    assert len(outage) < MAX_OUTAGE_LINES, "\n".join(outage[-40:])
