"""The coordinator look-up aiokafka logs at ERROR on every fresh start is logged at INFO (issue #9)."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
from aiokafka import errors as aiokafka_errors

from prefstream import logs


@pytest.fixture
def faust_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[logging.Logger]:
    """The dictConfig faust's Worker applies (JSON, level info), restored afterwards; yields aiokafka's logger."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.config.dictConfig(logs.stdlib_logging_config("json", "info", repeat_window_s=0))
    yield logging.getLogger("aiokafka.consumer.group_coordinator")
    root.handlers[:], root.level = saved[0], saved[1]


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_coordinator_not_available_is_info(faust_logging: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    """aiokafka's `Group Coordinator Request failed: GroupCoordinatorNotAvailableError` comes out at info."""
    faust_logging.error("Group Coordinator Request failed: %s", aiokafka_errors.GroupCoordinatorNotAvailableError())
    [line] = _lines(capsys)
    assert line["level"] == "info"
    assert "GroupCoordinatorNotAvailableError" in str(line["event"])


def test_other_coordinator_errors_stay_errors(faust_logging: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    """The same message with a non-transient cause, and other aiokafka errors, keep their ERROR level."""
    faust_logging.error("Group Coordinator Request failed: %s", aiokafka_errors.KafkaConnectionError())
    faust_logging.error("Heartbeat session expired - marking coordinator dead")
    assert [line["level"] for line in _lines(capsys)] == ["error", "error"]
