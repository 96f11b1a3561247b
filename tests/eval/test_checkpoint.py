"""The run directory: records survive a kill; a cut-off last line is redone; corruption is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefstream.eval.checkpoint import JudgmentRecord, ProfileRecord, RunDir, profile_key
from prefstream.eval.data import EvalInputError


def _rec(case: int) -> ProfileRecord:
    return ProfileRecord(method="m", case=case, step=1, summary="s", status="ok", summary_tokens=1)


def test_records_are_reloaded_and_a_cut_off_last_line_is_dropped(tmp_path: Path) -> None:
    """A resumed run sees every whole record; the half-written last line is removed from the file."""
    run = RunDir(tmp_path)
    run.open(b"{}", restart=False)
    run.add(_rec(0))
    run.add(JudgmentRecord(method="none", case=0, step=0, probe="target", status="ok", correct=True, choice="A"))
    run.close()
    whole = run.records_path.read_bytes()
    run.records_path.write_bytes(whole + b'{"kind":"profile","method":"m","ca')
    again = RunDir(tmp_path)
    assert again.open(b"{}", restart=False) == 2
    assert profile_key("m", 0, 1) in again.records
    again.add(_rec(1))
    again.close()
    assert run.records_path.read_bytes() == whole + b'{"kind":"profile","method":"m","case":1,"step":1,"summary":"s",' \
        b'"status":"ok","failure":null,"summary_tokens":1,"dropped":0}\n'


def test_a_corrupt_middle_line_or_other_settings_are_errors(tmp_path: Path) -> None:
    """A bad line before the last, or a resume with other settings, stops with a one-line error."""
    run = RunDir(tmp_path)
    run.open(b'{"steps":2}', restart=False)
    run.add(_rec(0))
    run.close()
    with pytest.raises(EvalInputError, match="other settings"):
        RunDir(tmp_path).open(b'{"steps":3}', restart=False)
    assert RunDir(tmp_path).open(b'{"steps":3}', restart=True) == 0  # --restart discards the old run
    run.records_path.write_bytes(b"garbage\n" + run.records_path.read_bytes() + b'{"kind":"x"}\n')
    with pytest.raises(EvalInputError, match=r"records\.jsonl:1: not a record"):
        RunDir(tmp_path).open(b'{"steps":3}', restart=False)
