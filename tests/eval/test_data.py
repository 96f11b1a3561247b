"""Reading evaluation input: the benchmark format, events plus targets, and clear errors for bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefstream.eval.data import EvalInputError, load_benchmark, load_events, task_for
from prefstream.eval.synthetic import generate, write
from prefstream.schemas.evidence import NO_NEGATIVE
from prefstream.settings import LimitSettings, load_section

T = {"query": "q", "chosen": "c", "rejected": "r"}


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_benchmark_lines_become_cases(tmp_path: Path) -> None:
    """Ids (`user_id` or the authors' `userid`), missing queries and missing negatives get the authors' forms."""
    path = _write(tmp_path / "alignx_upi.jsonl", [
        {"userid": 7, "history": [T, {"chosen": "c2", "rejected": None}], "target": T, "ground_truth_persona": "p"},
        {"history": [T], "target": {"query": None, "chosen": "a", "rejected": "b"}},
    ])
    first, second = load_benchmark(path)
    assert first.user_id == "7" and first.task == "selection" and first.persona == "p"
    assert first.history[1].rejected == NO_NEGATIVE and first.history[1].query.startswith("Please recommend")
    assert second.user_id == "line-2" and second.target.chosen == "a"


def test_recommendation_sets_are_named_like_the_authors(tmp_path: Path) -> None:
    """MIND, Amazon and MovieLens files are recommendation sets (split in thirds); others selection sets."""
    assert task_for(Path("mind_upi.jsonl")) == "recommendation"
    assert task_for(Path("benchmark/movielens_upi.jsonl")) == "recommendation"
    assert task_for(Path("student_phd_upi.jsonl")) == "selection"
    path = _write(tmp_path / "amazon_upi.jsonl", [{"history": [T], "target": T, "task": "selection"},
                                                  {"history": [T], "target": T}])
    assert [c.task for c in load_benchmark(path)] == ["selection", "recommendation"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "not a JSON object"),
        ({"history": [T]}, "missing required field `target`"),
        ({"history": [], "target": T}, "`history` is empty"),
        ({"history": [T], "target": {"query": "q", "chosen": "c"}}, "the target needs `rejected`"),
        ({"history": [{"query": "q", "chosen": 3, "rejected": "r"}], "target": T}, "Expected `str`, got `int`"),
        ({"history": [{"chosen": " "}], "target": T}, "history[0]: `chosen` is empty"),
    ],
)
def test_a_bad_line_is_an_error_naming_its_line(tmp_path: Path, line: object, expected: str) -> None:
    """A bad line stops the load with its file, line number and what is wrong; nothing is skipped."""
    path = _write(tmp_path / "x.jsonl", [{"history": [T], "target": T}, "", line])
    with pytest.raises(EvalInputError, match=rf"x\.jsonl:3: .*{__import__('re').escape(expected)}"):
        load_benchmark(path)


def test_duplicate_users_and_empty_files_are_errors(tmp_path: Path) -> None:
    """A user twice, or a file with no case, is an error rather than a silent half-result."""
    dup = _write(tmp_path / "d.jsonl", [{"user_id": "u", "history": [T], "target": T}] * 2)
    with pytest.raises(EvalInputError, match=r"d\.jsonl:2: user 'u' appears twice"):
        load_benchmark(dup)
    with pytest.raises(EvalInputError, match="no cases"):
        load_benchmark(_write(tmp_path / "e.jsonl", []))


def test_events_and_benchmark_formats_give_the_same_cases(tmp_path: Path) -> None:
    """A synthetic population written in both formats loads to the same histories and targets."""
    users = generate(users=5, events=6, noise=0.1, drift=0.5, seed=3)
    (bench,) = write(users, tmp_path / "s.jsonl", "benchmark")
    events, targets = write(users, tmp_path / "s.jsonl", "events")
    limits = load_section(LimitSettings, {})
    from_events = load_events(events, targets, limits=limits)
    from_bench = load_benchmark(bench, task="selection")
    assert [(c.user_id, c.history, c.target) for c in from_events] == [
        (c.user_id, c.history, c.target) for c in from_bench
    ]


def test_events_errors_name_file_and_line(tmp_path: Path) -> None:
    """A rejected event, a user without target, or a target without a negative is a one-line error."""
    limits = load_section(LimitSettings, {})
    ev = {"kind": "pair", "event_id": "e1", "user_id": "u1", "ts": 1, "chosen": "a", "rejected": "b"}
    good_target = {**ev, "event_id": "t1"}
    events = _write(tmp_path / "ev.jsonl", [ev, {**ev, "event_id": "e2", "ts": "yesterday"}])
    with pytest.raises(EvalInputError, match=r"ev\.jsonl:2: event rejected"):
        load_events(events, _write(tmp_path / "t.jsonl", [good_target]), limits=limits)
    events = _write(tmp_path / "ev.jsonl", [ev])
    with pytest.raises(EvalInputError, match="no target event for 1 user"):
        load_events(events, _write(tmp_path / "t0.jsonl", [{**good_target, "user_id": "u2"}]), limits=limits)
    engaged = {"kind": "engagement", "event_id": "t2", "user_id": "u1", "ts": 2, "item": "a"}
    with pytest.raises(EvalInputError, match=r"t2\.jsonl:1: user 'u1' has no target with both"):
        load_events(events, _write(tmp_path / "t2.jsonl", [engaged]), limits=limits)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["history", "target", "query", "chosen", "rejected", "user_id", "task", "x"]), inner,
        max_size=4),
    max_leaves=12,
)


@given(_JSONISH)
def test_any_line_is_a_case_or_a_one_line_error(value: object) -> None:
    """Whatever JSON a line holds, loading gives a case or an EvalInputError naming line 1, never another error."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.jsonl"
        path.write_text(json.dumps(value) + "\n")
        try:
            cases = load_benchmark(path)
        except EvalInputError as exc:
            assert str(exc).startswith(f"{path}:1: ") and "\n" not in str(exc)
        else:
            assert len(cases) == 1
