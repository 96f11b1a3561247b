"""`prefstream capacity`: the sizing arithmetic, the prompt measured by the real renderer, one-line errors."""

from __future__ import annotations

import math

import pytest

from prefstream import cli
from prefstream.capacity import TARGET_UTILIZATION, make_plan, sample_prompt_tokens
from prefstream.models.tiny import ensure_tiny_model


def test_plan_arithmetic_for_a_million_users() -> None:
    """2,000 events/s folded 16 to an update is 125 updates/s; at 4,096 output tokens and 3,000 tokens/s per
    GPU at 70% that needs 244 GPUs; 8 workers of 400 events/s; 16 partitions."""
    plan = make_plan(2000, 1_000_000, 16, 2500, "given", 4096, 3000, 400)  # worker figure given, not the default
    assert plan.updates_per_s == 125
    assert plan.gpus == math.ceil(125 * 4096 / (3000 * TARGET_UTILIZATION)) == 244
    assert (plan.workers, plan.partitions) == (8, 16)
    assert make_plan(10, 100, 4, 100, "given", 100, 3000, 400).partitions == 8  # never below 8


def test_prompt_tokens_grow_with_the_events_folded_and_use_the_tokenizer() -> None:
    """The sample prompt is rendered by models/prompt.py: more events, more tokens; with a tokenizer the count is
    exact and says so."""
    few, how = sample_prompt_tokens(2, 400, None)
    many, _ = sample_prompt_tokens(16, 400, None)
    assert many > few > 400 and "estimated" in how
    counted, how = sample_prompt_tokens(2, 400, ensure_tiny_model())
    assert counted > 400 and how.startswith("counted with")


def test_capacity_prints_the_arithmetic_and_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    """The command prints each step of the arithmetic and a last summary line with GPUs, workers, partitions."""
    code = cli.main(["capacity", "--events-per-s", "2000", "--active-users", "1000000", "--output-tokens", "2000"])
    out = capsys.readouterr().out
    assert code == 0
    assert "updates/s    = events/s / events per update = 2,000 / 16 = 125.0" in out
    assert "GPUs 120  workers 6  partitions 16" in out  # ceil(125 x 2000 / 2100), ceil(2000 / (490 x 0.7))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--events-per-s", "0", "--active-users", "5"], "--events-per-s must be a positive number, got 0.0"),
        (["--events-per-s", "5", "--active-users", "0"], "--active-users must be at least 1, got 0"),
        (["--events-per-s", "5", "--active-users", "5", "--events-per-update", "99"],
         "--events-per-update must be between 1 and PREFSTREAM_FLUSH_MAX_EVENTS (32), got 99"),
        (["--events-per-s", "5", "--active-users", "5", "--tokenizer", "/nonexistent"], "no tokenizer.json at /nonexistent"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad argument ends with one line naming it, exit code 2, no traceback."""
    code = cli.main(["capacity", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("prefstream capacity: ") and message in err and len(err.strip().splitlines()) == 1
