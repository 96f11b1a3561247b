"""The ledger test backend."""

from __future__ import annotations

import asyncio
import time
import typing

import msgspec
import pytest

from prefstream.models.backends.ledger import FAIL_MODES, LedgerBackend, LedgerFault, malformed_generation, parse_ledger
from prefstream.models.errors import FailureReason, OutputParseError
from prefstream.models.interface import UpdateFailure, UpdateRequest, UpdateSuccess
from prefstream.models.parse import parse_summary
from prefstream.errors import ConfigError
from prefstream.settings import FlushSettings, LedgerSettings, Settings
from prefstream.schemas.evidence import Evidence
from prefstream.streams import state as st
from prefstream.streams.metrics import StreamMetrics
from prefstream.streams.policy import FlushPolicy
from prefstream.streams.scheduler import FoldScheduler


def request(user: str, ids: list[str], previous: str | None = None) -> UpdateRequest:
    return UpdateRequest(request_id="r", user_id=user, epoch=1, base_version=0, previous_summary=previous,
                         evidence=tuple(Evidence(event_id=i) for i in ids))  # fmt: skip


def test_summary_lists_event_ids_in_order() -> None:
    """A ledger summary is the previous ids followed by the new evidence ids."""
    backend = LedgerBackend()
    out = asyncio.run(backend.update(request("u", ["c", "d"], previous="a\nb")))
    assert isinstance(out, UpdateSuccess) and parse_ledger(out.summary) == ["a", "b", "c", "d"]


def test_injected_failures_per_user_then_success() -> None:
    """Users with the failing prefix fail their first fail_times updates, then succeed."""
    backend = LedgerBackend(fail_user_prefix="bad-", fail_times=2)
    outs = [asyncio.run(backend.update(request("bad-1", ["a"]))) for _ in range(3)]
    assert [type(o) for o in outs] == [UpdateFailure, UpdateFailure, UpdateSuccess]
    assert isinstance(asyncio.run(backend.update(request("good", ["a"]))), UpdateSuccess)


def test_cancel_counts_an_abort() -> None:
    """Cancelling a slow update aborts it."""
    backend = LedgerBackend(delay_s=10)

    async def go() -> None:
        task = asyncio.create_task(backend.update(request("u", ["a"])))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert backend.cancelled == 1


# --- fault modes (PREFSTREAM_LEDGER_FAIL_MODE) --------------------------------------------------------

MALFORMED = ["no_think_close", "empty_summary", "summary_too_long", "truncated"]


@pytest.mark.parametrize("mode", MALFORMED)
def test_malformed_generation_gets_the_parsers_reason(mode: str) -> None:
    """A malformed mode's generation goes through the LLM backends' parser, which names it exactly."""
    backend = LedgerBackend(fail_user_prefix="bad-", fail_times=1, fail_mode=mode, max_summary_chars=50)
    out = asyncio.run(backend.update(request("bad-1", ["a", "b"], previous="x")))
    assert isinstance(out, UpdateFailure) and out.reason == mode and out.retryable
    # The raw text itself, through the bare parser: the same verdict.
    text, finish = malformed_generation(mode, "x\na\nb", 50)
    with pytest.raises(OutputParseError) as err:
        parse_summary(text, finish_reason=finish, max_chars=50)
    assert err.value.reason == FailureReason(mode)
    # The failure budget is spent: the next update succeeds with every id.
    again = asyncio.run(backend.update(request("bad-1", ["a", "b"], previous="x")))
    assert isinstance(again, UpdateSuccess) and parse_ledger(again.summary) == ["x", "a", "b"]


def test_summary_too_long_is_one_over_the_limit() -> None:
    """The over-long summary is exactly one character over: the parser's bound, not a vague 'large'."""
    text, _ = malformed_generation("summary_too_long", "a\nb", 40)
    assert len(text.rpartition("</think>")[2].strip()) == 41
    assert parse_summary(text[:-1], finish_reason="stop", max_chars=40)  # one less is accepted


def test_raise_mode_raises_and_the_scheduler_makes_it_an_engine_error() -> None:
    backend = LedgerBackend(fail_user_prefix="bad-", fail_times=5, fail_mode="raise")
    with pytest.raises(LedgerFault):
        asyncio.run(backend.update(request("bad-1", ["a"])))
    out = asyncio.run(_scheduler(backend, timeout_s=5)._call(request("bad-1", ["a"])))
    assert isinstance(out, UpdateFailure) and out.reason == "engine_error"


def test_hang_mode_ends_only_by_the_time_box() -> None:
    """A hanging update is cancelled by the scheduler's time box: `timeout`, and the backend saw the cancel."""
    backend = LedgerBackend(fail_user_prefix="bad-", fail_times=5, fail_mode="hang")
    started = time.monotonic()
    out = asyncio.run(_scheduler(backend, timeout_s=0.3)._call(request("bad-1", ["a"])))
    assert isinstance(out, UpdateFailure) and out.reason == "timeout"
    assert 0.3 <= time.monotonic() - started < 5 and backend.cancelled == 1
    ok = asyncio.run(_scheduler(backend, timeout_s=0.3)._call(request("good", ["a"])))
    assert isinstance(ok, UpdateSuccess)


def test_fail_from_version_keeps_the_first_update_and_always_prefix_never_recovers() -> None:
    backend = LedgerBackend(fail_user_prefix="flaky-", fail_times=2, fail_always_prefix="dead-", fail_from_version=1)

    def run(user: str, base: int) -> type:
        req = msgspec.structs.replace(request(user, ["a"]), base_version=base)
        return type(asyncio.run(backend.update(req)))

    assert [run("flaky-1", 0), run("flaky-1", 1), run("flaky-1", 1), run("flaky-1", 1)] == [
        UpdateSuccess, UpdateFailure, UpdateFailure, UpdateSuccess,
    ]  # fmt: skip
    assert run("dead-1", 0) is UpdateSuccess
    assert {run("dead-1", 1) for _ in range(20)} == {UpdateFailure}
    assert backend.injected == 22


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="fail_mode"):
        LedgerBackend(fail_mode="explode")


def test_settings_reach_the_backend() -> None:
    settings = Settings.from_env({"PREFSTREAM_LEDGER_FAIL_MODE": "truncated", "PREFSTREAM_LEDGER_FAIL_FROM_VERSION": "1",
                                  "PREFSTREAM_LEDGER_FAIL_ALWAYS_PREFIX": "d-", "PREFSTREAM_MAX_SUMMARY_CHARS": "77"})  # fmt: skip
    backend = LedgerBackend.from_settings(settings)
    assert (backend.fail_mode, backend.fail_from_version, backend.fail_always_prefix, backend.max_summary_chars) == (
        "truncated", 1, "d-", 77,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="PREFSTREAM_LEDGER_FAIL_MODE"):
        Settings.from_env({"PREFSTREAM_LEDGER_FAIL_MODE": "explode"})
    assert set(FAIL_MODES) == set(typing.get_args(typing.get_type_hints(LedgerSettings)["fail_mode"]))


def _scheduler(backend: LedgerBackend, *, timeout_s: float) -> FoldScheduler:
    flush = FlushSettings(update_timeout_s=timeout_s)

    async def send(partition: int, result: object) -> None:
        return None

    return FoldScheduler(backend=backend, policy=FlushPolicy.from_settings(flush, 1000), flush=flush,
                         plan=st.RetryPlan(2, 2, 0.1, 1.0), read_state=lambda u: (st.Meta(), None, None),
                         send_result=send, metrics=StreamMetrics(), user_key=lambda u: u)  # fmt: skip
