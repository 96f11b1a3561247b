"""Turn a run's records into results: the tables (JSON and markdown) and the plot. Pure but for the plot's file.

`prefstream eval report OUT` redoes this from OUT's records alone, so the tables and the figure can be
regenerated (and restyled) without running a model again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from prefstream.eval.checkpoint import JudgmentRecord, ProfileRecord, Record
from prefstream.eval.stats import wilson

STATUS_COLUMNS = ("ok", "malformed", "both", "neither", "error")


class MethodRow(msgspec.Struct, kw_only=True):
    """One method's accuracy on the held-out targets (a streaming method: after its last step)."""

    method: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    answers: dict[str, int]  # answer status -> count (ok, malformed, both, neither, error)
    retention: float | None = None  # accuracy on probe pairs from early history
    retention_n: int = 0
    mean_summary_tokens: float | None = None
    update_failures: int | None = None
    failure_reasons: dict[str, int] | None = None  # failed updates by the backend's reason code
    dropped_triples: int | None = None


class StepRow(msgspec.Struct, kw_only=True):
    """A streaming method after step `step` of `steps`."""

    method: str
    step: int
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_summary_tokens: float
    retention: float | None
    retention_n: int
    flip_rate: float | None  # share of probe answers (target and early) whose stance changed since the last step
    flips_n: int
    update_failures: int


class Results(msgspec.Struct, kw_only=True):
    run: dict[str, Any]
    methods: list[MethodRow]
    steps: list[StepRow]


def _mean(xs: Sequence[int]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def aggregate(run: dict[str, Any], records: Iterable[Record]) -> Results:
    """The results of a run from its records."""
    judgments: dict[tuple[str, int], list[JudgmentRecord]] = defaultdict(list)  # (method, step) -> records
    profiles: dict[tuple[str, int], list[ProfileRecord]] = defaultdict(list)
    for r in records:
        if isinstance(r, JudgmentRecord):
            judgments[(r.method, r.step)].append(r)
        else:
            profiles[(r.method, r.step)].append(r)
    steps_total = int(run.get("steps", 0))
    methods: list[MethodRow] = []
    step_rows: list[StepRow] = []
    order = list(dict.fromkeys(m for m, _ in judgments))
    for method in order:
        streaming = method.endswith("/stream")
        base = method.rsplit("/", 1)[0]
        final_step = steps_total if streaming else 0
        methods.append(_method_row(method, judgments[(method, final_step)], profiles.get((base, final_step), [])
                                   if "/" in method else None))
        if streaming:
            previous: dict[tuple[int, str], bool] = {}
            for step in range(1, steps_total + 1):
                rows = judgments[(method, step)]
                current = {(r.case, r.probe): r.correct for r in rows if r.status == "ok"}
                both = [k for k in current if k in previous]
                flips = sum(1 for k in both if current[k] != previous[k])
                target = [r for r in rows if r.probe == "target"]
                early = [r for r in rows if r.probe != "target"]
                prof = profiles.get((base, step), [])
                correct = sum(r.correct for r in target)
                lo, hi = wilson(correct, len(target))
                step_rows.append(StepRow(
                    method=method, step=step, n=len(target), accuracy=correct / len(target) if target else 0.0,
                    ci_low=lo, ci_high=hi, mean_summary_tokens=_mean([p.summary_tokens for p in prof]) or 0.0,
                    retention=sum(r.correct for r in early) / len(early) if early else None, retention_n=len(early),
                    flip_rate=flips / len(both) if step > 1 and both else None, flips_n=len(both) if step > 1 else 0,
                    update_failures=sum(p.status == "failed" for p in prof),
                ))
                previous = current
    return Results(run=run, methods=methods, steps=step_rows)


def _method_row(method: str, rows: list[JudgmentRecord], prof: list[ProfileRecord] | None) -> MethodRow:
    target = [r for r in rows if r.probe == "target"]
    early = [r for r in rows if r.probe != "target"]
    correct = sum(r.correct for r in target)
    lo, hi = wilson(correct, len(target))
    statuses = Counter(r.status for r in target)
    return MethodRow(
        method=method, n=len(target), correct=correct, accuracy=correct / len(target) if target else 0.0,
        ci_low=lo, ci_high=hi, answers={s: statuses.get(s, 0) for s in STATUS_COLUMNS},
        retention=sum(r.correct for r in early) / len(early) if early else None, retention_n=len(early),
        mean_summary_tokens=_mean([p.summary_tokens for p in prof]) if prof is not None else None,
        update_failures=sum(p.status == "failed" for p in prof) if prof is not None else None,
        failure_reasons=dict(Counter(p.failure for p in prof if p.failure)) if prof is not None else None,
        dropped_triples=sum(p.dropped for p in prof) if prof is not None else None,
    )


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown(results: Results) -> str:
    """The results as two markdown tables (methods, then steps of the streaming methods)."""
    run = results.run
    lines = [
        f"Data: `{run.get('input')}` ({run.get('cases')} users); preference model: `{run.get('preference')}`; "
        f"judge: `{run.get('judge')}`; {run.get('steps')} streaming steps; seed {run.get('seed')}; "
        f"summary tokens counted with: {run.get('summary_tokens_counted_with', 'the preference model')}.",
        "",
        "| method | n | accuracy % | 95% CI | early-probe retention % | mean summary tokens | answers ok / malformed "
        "/ both / neither / error | failed updates |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for m in results.methods:
        answers = " / ".join(str(m.answers.get(s, 0)) for s in STATUS_COLUMNS)
        tokens = "–" if m.mean_summary_tokens is None else f"{m.mean_summary_tokens:.0f}"
        failures = "–" if m.update_failures is None else str(m.update_failures)
        if m.failure_reasons:
            failures += " (" + ", ".join(f"{k} {v}" for k, v in sorted(m.failure_reasons.items())) + ")"
        lines.append(
            f"| {m.method} | {m.n} | {_pct(m.accuracy)} | {_pct(m.ci_low)}–{_pct(m.ci_high)} | {_pct(m.retention)} "
            f"| {tokens} | {answers} | {failures} |"
        )
    if results.steps:
        lines += [
            "",
            "| streaming method | step | accuracy % | 95% CI | early-probe retention % | flip rate % "
            "| mean summary tokens | failed updates |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for s in results.steps:
            lines.append(
                f"| {s.method} | {s.step} | {_pct(s.accuracy)} | {_pct(s.ci_low)}–{_pct(s.ci_high)} "
                f"| {_pct(s.retention)} | {_pct(s.flip_rate)} | {s.mean_summary_tokens:.0f} | {s.update_failures} |"
            )
    return "\n".join(lines) + "\n"


def plot(results: Results, path: Path) -> None:
    """Accuracy by method (with 95% CIs), and accuracy, retention and summary length by step, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    rows = results.methods
    ys = list(range(len(rows)))[::-1]
    acc = [100 * m.accuracy for m in rows]
    err = [[100 * (m.accuracy - m.ci_low) for m in rows], [100 * (m.ci_high - m.accuracy) for m in rows]]
    ax1.barh(ys, acc, xerr=err, color="#4c72b0", capsize=3)
    for y, m in zip(ys, rows):  # the answers that could not count, so a judge that cannot answer is visible
        bad = m.n - m.answers.get("ok", 0)
        note = f"{100 * m.accuracy:.0f}%" + (f"  ({bad}/{m.n} answers not ok)" if bad else "")
        ax1.text(min(100 * m.ci_high + 1, 60), y, note, va="center", fontsize=7)
    ax1.set_yticks(ys, [m.method for m in rows])
    ax1.axvline(50, color="grey", linestyle=":", linewidth=1)
    ax1.set_xlim(0, 100)
    ax1.set_xlabel("accuracy on held-out target, % (95% CI)")
    ax1.set_title("accuracy by method")
    for method in dict.fromkeys(s.method for s in results.steps):
        steps = [s for s in results.steps if s.method == method]
        xs = [s.step for s in steps]
        line = ax2.plot(xs, [100 * s.accuracy for s in steps], marker="o", label=f"{method} target")[0]
        if any(s.retention is not None for s in steps):
            ax2.plot(xs, [100 * s.retention if s.retention is not None else float("nan") for s in steps],
                     marker="x", linestyle="--", color=line.get_color(), label=f"{method} early probes")
        ax3.plot(xs, [s.mean_summary_tokens for s in steps], marker="o", color=line.get_color(), label=method)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax2, ax3):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax3.set_ylim(bottom=0)
    ax2.axhline(50, color="grey", linestyle=":", linewidth=1)
    ax2.set_ylim(0, 100)
    ax2.set_xlabel("streaming step")
    ax2.set_ylabel("accuracy, %")
    ax2.set_title("accuracy by step")
    ax3.set_xlabel("streaming step")
    ax3.set_ylabel("mean summary length, tokens")
    ax3.set_title("summary length by step")
    for ax in (ax2, ax3):
        if ax.lines:
            ax.legend(fontsize=7)
    run = results.run
    fig.suptitle(f"{run.get('input')}: {run.get('cases')} users, preference {run.get('preference')}, "
                 f"judge {run.get('judge')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: Results, out: Path, *, with_plot: bool = True) -> list[Path]:
    """results.json, results.md and (with matplotlib installed) plot.png in `out`."""
    paths = [out / "results.json", out / "results.md"]
    paths[0].write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2) + b"\n")
    paths[1].write_text(markdown(results))
    if with_plot:
        plot(results, out / "plot.png")
        paths.append(out / "plot.png")
    return paths
