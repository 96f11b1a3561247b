"""`prefstream topics ensure`: create missing topics and report mismatches (exit 1 when any)."""

from __future__ import annotations

import argparse

from prefstream.topics import ensure_topics


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del parser, command


def run(args: argparse.Namespace) -> int:
    reports = ensure_topics(args.settings)
    for report in reports:
        print(report)
    return 1 if any(r.action == "mismatch" for r in reports) else 0
