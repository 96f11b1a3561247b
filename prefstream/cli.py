"""prefstream: plain-language preference profiles of your users, folded from Kafka events by a model.

Each subcommand lives in the package that owns it and is imported only when it runs, so
`prefstream --help` never imports faust, vLLM or torch. A subcommand module provides
`add_arguments(parser, command)` and `run(args) -> int`; `args.settings` holds the `Settings`
read once from the environment, and `args.command` the subcommand's name.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Nested groups use "group subcommand".
COMMANDS: dict[str, tuple[str, str]] = {
    "kafka up": ("prefstream.kafka.cli", "Fetch (cached) and start a local Kafka broker; reuse one already started."),
    "kafka down": ("prefstream.kafka.cli", "Stop exactly the local broker(s) `kafka up` started."),
    "kafka status": ("prefstream.kafka.cli", "Say whether the local broker (or the one KAFKA_BOOTSTRAP_SERVERS names) answers."),
    "kafka wait": ("prefstream.kafka.cli", "Wait until KAFKA_BOOTSTRAP_SERVERS accepts clients."),
    "kafka fetch": ("prefstream.kafka.cli", "Fetch the pinned Kafka jars from Maven Central into the cache."),
    "topics ensure": ("prefstream.topics_cli", "Create missing topics; report mismatches."),
    "topics manifest": ("prefstream.topics_cli", "Print Strimzi KafkaTopic resources for every topic."),
    "worker": ("prefstream.streams.cli", "Run a stream worker (needs PREFSTREAM_MODEL_BACKEND)."),
    "state migrate": ("prefstream.streams.migrate", "Move the state of a release before 0.2.0 into the one state table."),
    "parked": ("prefstream.streams.parked_cli", "List the users whose updates stopped after repeated failures."),
    "redrive": ("prefstream.streams.redrive", "Retry the model updates of parked users (all, or those named)."),
    "backfill": ("prefstream.streams.backfill", "Fold users' past events (a JSONL file or a topic) into their profiles."),
    "prompt": ("prefstream.models.cli", "Print the exact chat messages the model would get for a JSONL file of events."),
    "eval run": ("prefstream.eval.cli", "Evaluate profiles against baselines with the AlignXplore+ selection protocol."),
    "eval generate": ("prefstream.eval.cli", "Write synthetic users with known tastes for `eval run`."),
    "eval report": ("prefstream.eval.cli", "Rebuild an eval run's tables and plot from its records."),
    "demo": ("prefstream.demo", "End to end: broker, worker, sample events in, profiles printed."),
    "settings": ("prefstream.settings_cli", "Print the effective settings by section (secrets masked), or the README's table."),
    "produce": ("prefstream.produce_cli", "Validate a JSONL file of events (bad lines by number), then send it."),
    "tail": ("prefstream.tail_cli", "Follow profile updates on the profiles topic (readable, or --json)."),
    "profile": ("prefstream.profile_cli", "Show one user's profile (read API; the topic when no worker answers)."),
    "doctor": ("prefstream.doctor", "Check settings, broker, topics, model backend and read API: one line each."),
    "capacity": ("prefstream.capacity", "GPUs, workers and partitions for a load, with the arithmetic shown."),
}

GROUPS: dict[str, str] = {
    "kafka": "A local Kafka broker for development, demos and tests; or check the one KAFKA_BOOTSTRAP_SERVERS names.",
    "topics": "prefstream's Kafka topics.",
    "state": "The worker's local state.",
    "eval": "Measure what profiles are worth to a downstream model (the AlignXplore+ protocol; docs/eval.md).",
}

EPILOG = """\
Run `prefstream COMMAND --help` for a command's arguments. Settings come from the environment
(`prefstream settings` shows them; README "Configuration").

exit codes:
  0    done
  1    the command ran and found a problem: a topic mismatch, a broker not running, a named user
       not parked, a failed `doctor` check, no profile for the user, a worker that stopped on a
       fatal condition (restart it)
  2    a usage or configuration error, or Kafka or the read API unreachable: one line on stderr
       says what to fix
  3    `produce`: lines of the file are not valid events (listed by number); nothing was sent
  4    `produce`: the broker did not acknowledge every event (named; sending again is safe)
  130  interrupted (Ctrl-C)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefstream", description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        words = name.split()
        if len(words) == 1:
            sub = top.add_parser(words[0], help=help_text, description=help_text)
        else:
            group, leaf = words
            if group not in groups:
                group_parser = top.add_parser(group, help=GROUPS[group], description=GROUPS[group])
                groups[group] = group_parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
            sub = groups[group].add_parser(leaf, help=help_text, description=help_text)
        sub.set_defaults(_command=name, _module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Parse only the command words first, then let the owning module add its own arguments.
    words = [a for a in argv if not a.startswith("-")][:2]
    name = next((n for n in COMMANDS if n.split() == words[: len(n.split())]), None)
    if name is None or argv[: len(name.split())] != name.split():
        parser.parse_args(argv)  # prints usage (or help) and exits
        raise SystemExit(2)
    known = argparse.Namespace(_command=name, _module=COMMANDS[name][0])
    module = importlib.import_module(known._module)
    full = argparse.ArgumentParser(prog=f"prefstream {known._command}", description=COMMANDS[name][1])
    module.add_arguments(full, known._command)
    args = full.parse_args(argv[len(known._command.split()) :])
    args.command = known._command
    from prefstream import logs
    from prefstream.errors import ConfigError, PrefstreamError
    from prefstream.settings import Settings

    try:
        try:
            args.settings = Settings.from_env()
        except ConfigError as exc:
            if not getattr(module, "RUNS_WITHOUT_SETTINGS", False):  # `doctor` reports it as a failed check
                raise
            args.settings, args.settings_error = None, exc
        if args.settings is not None:
            logs.configure(
                args.settings.worker.log_format,
                args.settings.worker.log_level,
                args.settings.worker.log_repeat_window_s,
            )
        return int(module.run(args) or 0)
    except PrefstreamError as exc:
        print(f"prefstream {known._command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
