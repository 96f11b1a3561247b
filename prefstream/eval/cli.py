"""`prefstream eval run | generate | report`: measure what a profile is worth to a downstream model.

    prefstream eval generate --users 40 --events 24 --out data/synth.jsonl [--format benchmark|events]
    prefstream eval run --benchmark data/synth.jsonl --preference-backend extractive --judge lexical --out runs/a
    prefstream eval run --events ev.jsonl --targets tg.jsonl --preference-backend vllm --judge vllm --out runs/b
    prefstream eval report runs/a          # rebuild results.{json,md} and plot.png from the run's records

The preference model is built from the same settings as the worker's (PREFSTREAM_MODEL, PREFSTREAM_...);
`--preference-backend` picks the backend (default PREFSTREAM_MODEL_BACKEND). The judge is chosen on its
own: `lexical` (a CPU stand-in), `vllm` (in-process; the preference engine itself when it is the same
model) or `openai` (any OpenAI-compatible server). See docs/eval.md. A killed run is resumed by running
the same command again; errors a person can cause are one line and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from prefstream.errors import ConfigError
from prefstream.eval.checkpoint import RunDir, judgment_key, profile_key
from prefstream.eval.data import Case, EvalInputError, load_benchmark, load_events
from prefstream.eval.judges import ChatJudge, Judge, LexicalJudge
from prefstream.eval.report import Results, aggregate, markdown, write
from prefstream.eval.runner import FULL, Plan, build_profiles, judge_all, judgment_units
from prefstream.models.interface import PreferenceModel
from prefstream.settings import Settings


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "eval generate":
        parser.add_argument("--out", type=Path, required=True, help="output file (events format: its stem)")
        parser.add_argument("--format", choices=("benchmark", "events"), default="benchmark")
        parser.add_argument("--users", type=int, default=40)
        parser.add_argument("--events", type=int, default=24, help="events per user")
        parser.add_argument("--noise", type=float, default=0.1, help="share of events against the taste")
        parser.add_argument("--drift", type=float, default=0.3, help="share of users whose taste changes once")
        parser.add_argument("--domain", choices=("books", "movies", "news", "music"), default=None,
                            help="one domain for all users (default: mixed)")
        parser.add_argument("--seed", type=int, default=0)
        return
    if command == "eval report":
        parser.add_argument("out", type=Path, metavar="OUT", help="the run directory")
        parser.add_argument("--no-plot", action="store_true")
        return
    src = parser.add_argument_group("input (one of)")
    src.add_argument("--benchmark", type=Path, help="JSONL in the AlignXplore+ benchmark format")
    src.add_argument("--events", type=Path, help="JSONL of prefstream events (history)")
    src.add_argument("--targets", type=Path, help="JSONL of held-out target events (with --events)")
    parser.add_argument("--task", choices=("auto", "selection", "recommendation"), default="auto",
                        help="auto: recommendation (thirds) for mind/amazon/movielens files, a line's `task`, else halves")
    parser.add_argument("--limit", type=int, default=None, help="only the first N users")
    parser.add_argument("--out", type=Path, required=True, help="run directory (resumed if it exists)")
    parser.add_argument("--restart", action="store_true", help="discard what --out holds and start over")
    parser.add_argument("--steps", type=int, default=2, help="streaming steps (paper: 2)")
    parser.add_argument("--probes", type=int, default=2, help="probe pairs from early history per user")
    parser.add_argument("--seed", type=int, default=0, help="seed of the A/B order and of the judge's sampling")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--preference-backend", choices=("vllm", "openai", "extractive", "ledger"), default=None,
                        help="default: PREFSTREAM_MODEL_BACKEND")
    parser.add_argument("--judge", choices=("lexical", "vllm", "openai"), required=True)
    parser.add_argument("--judge-model", default=None,
                        help="vllm: model path/id (default: the preference model's, sharing its engine); "
                             "openai: the served model name")
    parser.add_argument("--judge-base-url", default=None, help="openai judge: e.g. http://host:8000/v1")
    parser.add_argument("--judge-load-format", default="auto", help="vllm judge with its own engine: load format")
    parser.add_argument("--judge-max-tokens", type=int, default=16, help="paper: 16")
    parser.add_argument("--judge-temperature", type=float, default=0.6, help="paper: 0.6")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="count summary tokens with this tokenizer (default: the preference model's; "
                             "none: estimated as characters / 4)")
    parser.add_argument("--no-plot", action="store_true")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None)
    bar.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace) -> int:
    if args.command == "eval generate":
        return _generate(args)
    if args.command == "eval report":
        return _report(args)
    return _run(args)


def _generate(args: argparse.Namespace) -> int:
    from prefstream.eval import synthetic

    if args.users < 1 or args.events < 1:
        raise ConfigError("--users and --events must be >= 1")
    if not (0 <= args.noise <= 1 and 0 <= args.drift <= 1):
        raise ConfigError("--noise and --drift must be between 0 and 1")
    users = synthetic.generate(users=args.users, events=args.events, noise=args.noise, drift=args.drift,
                               seed=args.seed, domain=args.domain)
    for path in synthetic.write(users, args.out, args.format):
        print(path)
    return 0


def _report(args: argparse.Namespace) -> int:
    run_dir = RunDir(args.out)
    if not (args.out / "run.json").exists():
        raise EvalInputError(f"{args.out}: not a run directory (no run.json)")
    run_dir.load()
    info = msgspec.json.decode((args.out / "run.json").read_bytes())
    results = aggregate(info, run_dir.records.values())
    for path in write(results, args.out, with_plot=not args.no_plot):
        print(path)
    return 0


def load_cases(args: argparse.Namespace, settings: Settings) -> tuple[list[Case], str]:
    task = None if args.task == "auto" else args.task
    if args.benchmark is not None:
        if args.events is not None or args.targets is not None:
            raise ConfigError("give --benchmark, or --events with --targets, not both")
        cases, source = load_benchmark(args.benchmark, task=task), str(args.benchmark)
    elif args.events is not None and args.targets is not None:
        cases = load_events(args.events, args.targets, limits=settings.limits, task=task)
        source = f"{args.events} + {args.targets}"
    else:
        raise ConfigError("no input: give --benchmark FILE, or --events FILE with --targets FILE")
    if args.limit is not None:
        cases = cases[: args.limit]
    return cases, source


def _token_counter(args: argparse.Namespace, preference: PreferenceModel) -> tuple[Callable[[str], int], str]:
    from prefstream.models.tokens import PromptTokenizer

    if args.tokenizer is not None:
        tok = PromptTokenizer(args.tokenizer)
        return tok.count_text_tokens, str(args.tokenizer)
    own = getattr(preference, "tokenizer", None)
    if isinstance(own, PromptTokenizer):
        return own.count_text_tokens, str(own.path)
    return (lambda text: len(text) // 4 + 1), "estimate: characters / 4"


def _run(args: argparse.Namespace) -> int:
    from prefstream.models.backends import create_backend
    from prefstream.models.backends.extractive import ExtractiveBackend

    if args.steps < 1 or args.probes < 0 or args.concurrency < 1:
        raise ConfigError("--steps and --concurrency must be >= 1, --probes >= 0")
    settings: Settings = args.settings
    if args.preference_backend is not None:
        settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model,
                                                                           backend=args.preference_backend))
    if settings.model.backend is None:
        raise ConfigError("no preference model: pass --preference-backend or set PREFSTREAM_MODEL_BACKEND")
    cases, source = load_cases(args, settings)
    preference = create_backend(settings)
    models: dict[str, PreferenceModel] = {"extractive": ExtractiveBackend.from_settings(settings)}
    if preference.name != "extractive":
        models[preference.name] = preference
    judge_factory, judge_desc, shares = _judge(args, settings, preference)
    count_tokens, counted_with = _token_counter(args, preference)
    plan = Plan(steps=args.steps, probes=args.probes, seed=args.seed, concurrency=args.concurrency,
                progress=args.progress)
    info = {
        "input": source, "cases": len(cases), "steps": args.steps, "probes": args.probes, "seed": args.seed,
        "task": args.task, "limit": args.limit,
        "preference": f"{preference.name}:{preference.model_id}:{preference.prompt_version}",
        "max_summary_tokens": settings.model.max_summary_tokens, "judge": judge_desc,
        "judge_max_tokens": args.judge_max_tokens, "judge_temperature": args.judge_temperature,
        "summary_tokens_counted_with": counted_with,
    }
    results = asyncio.run(evaluate(cases, models, judge_factory, plan, args.out, info, count_tokens=count_tokens,
                                   restart=args.restart, keep_engine_for_judge=shares))
    paths = write(results, args.out, with_plot=not args.no_plot)
    sys.stdout.write(markdown(results))
    print("\n".join(str(p) for p in paths))
    return 0


def _judge(args: argparse.Namespace, settings: Settings,
           preference: PreferenceModel) -> tuple[Callable[[], Judge], str, bool]:
    """The judge factory (called once the profiles are built), its description, and whether it shares the engine."""
    params = {"max_tokens": args.judge_max_tokens, "temperature": args.judge_temperature}
    if args.judge == "lexical":
        return LexicalJudge, f"lexical:{LexicalJudge.model_id}", False
    if args.judge == "openai":
        from prefstream.models.backends.openai_chat import OpenAIChat

        if not args.judge_base_url or not args.judge_model:
            raise ConfigError("--judge openai needs --judge-base-url and --judge-model")
        key = settings.eval.judge_api_key
        return (lambda: ChatJudge(OpenAIChat(base_url=args.judge_base_url, model=args.judge_model, api_key=key,
                                             concurrency=args.concurrency), **params),
                f"openai:{args.judge_model}", False)
    from prefstream.models.backends.vllm_chat import VllmChat

    same = args.judge_model is None or args.judge_model == settings.model.model
    if same and preference.name == "vllm":
        engine_of = preference
        return (lambda: ChatJudge(VllmChat(engine=engine_of.engine,  # type: ignore[attr-defined]
                                           model_id=preference.model_id), **params),
                f"vllm:{preference.model_id} (shared engine)", True)
    if args.judge_model is None:
        raise ConfigError("--judge vllm needs --judge-model when the preference backend is not vllm")
    own = dataclasses.replace(settings.model, model=args.judge_model, model_id=None, tokenizer=None,
                              vllm_load_format=args.judge_load_format)
    return lambda: ChatJudge(VllmChat(settings=own), **params), f"vllm:{args.judge_model}", False


async def evaluate(cases: Sequence[Case], models: dict[str, PreferenceModel], judge_factory: Callable[[], Judge],
                   plan: Plan, out: Path, info: dict[str, Any], *, count_tokens: Callable[[str], int],
                   restart: bool = False, keep_engine_for_judge: bool = False, close_models: bool = True) -> Results:
    """Both phases with checkpoints in `out`, then the results. One engine at a time unless the judge shares it."""
    run_dir = RunDir(out)
    run_dir.open(msgspec.json.encode(info), restart=restart)
    started: list[PreferenceModel] = []

    async def start_models() -> None:
        for m in models.values():
            if m not in started:
                await m.start()
                started.append(m)

    try:
        missing = any(profile_key(name, i, step) not in run_dir.records
                      for name in models for i in range(len(cases)) for step in [FULL, *range(1, plan.steps + 1)])
        if missing:
            await start_models()
            await build_profiles(run_dir, cases, models, plan, count_tokens)
        units = judgment_units(cases, list(models), run_dir, plan)
        if any(judgment_key(u.method, u.case, u.step, u.probe) not in run_dir.records for u in units):
            if keep_engine_for_judge:
                await start_models()  # the judge runs on the preference engine
            elif close_models:  # one engine at a time: the judge may need the memory
                for m in started:
                    await m.aclose()
            judge = judge_factory()
            await judge.start()
            try:
                await judge_all(run_dir, cases, units, judge, plan)
            finally:
                await judge.aclose()
    finally:
        run_dir.close()
        if close_models:
            for m in started:
                await m.aclose()
    return aggregate(info, run_dir.records.values())
