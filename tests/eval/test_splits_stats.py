"""The authors' streaming splits generalised to k steps, and the Wilson interval."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefstream.eval import splits
from prefstream.eval.stats import wilson
from prefstream.schemas.evidence import NO_NEGATIVE, Triple


def _history(n: int) -> list[Triple]:
    return [Triple(query=f"q{i}", chosen=f"c{i}", rejected=f"r{i}") for i in range(n)]


def test_two_steps_are_the_authors_halves_and_thirds() -> None:
    """k=2: halves for selection sets; the first two thirds for recommendation sets (streaming_gen_preference.py)."""
    h = _history(10)
    assert splits.chunks(h, "selection", 2) == [tuple(h[:5]), tuple(h[5:])]
    n = len(h)
    assert splits.chunks(h, "recommendation", 2) == [tuple(h[: n // 3]), tuple(h[n // 3 : 2 * (n // 3)])]
    assert splits.used(h, "recommendation") == tuple(h[: 2 * (n // 3)])


@given(st.integers(0, 60), st.integers(1, 40), st.sampled_from(["selection", "recommendation"]))
def test_chunks_cover_the_used_history_in_order(n: int, k: int, task: str) -> None:
    """Any k: k chunks whose concatenation is exactly the used history (chunks may be empty when k > n)."""
    h = _history(n)
    parts = splits.chunks(h, task, k)  # type: ignore[arg-type]
    assert len(parts) == k
    assert tuple(t for p in parts for t in p) == splits.used(h, task)  # type: ignore[arg-type]


def test_early_probes_come_from_the_first_step_and_need_a_negative() -> None:
    """Probe pairs are the first step's triples that have a real rejected item."""
    h = _history(8)
    h[0] = Triple(query="q", chosen="c", rejected=NO_NEGATIVE)
    assert splits.early_probes(h, "selection", 2, 2) == (h[1], h[2])
    assert splits.early_probes(h, "selection", 4, 5) == (h[1],)


def test_wilson_matches_known_values() -> None:
    """The Wilson interval matches published values and stays within [0, 1] at the extremes."""
    lo, hi = wilson(81, 263)  # Wilson (1927) example as tabulated by Newcombe (1998): 0.2553 to 0.3662
    assert round(lo, 4) == 0.2553 and round(hi, 4) == 0.3662
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)  # the "rule of three"-like bound at n = 10
    assert wilson(0, 0) == (0.0, 1.0)
