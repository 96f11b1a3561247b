"""`prefstream settings [--markdown]`: the effective settings (secrets masked), or the README table."""

from __future__ import annotations

import argparse

from prefstream.settings import markdown_table


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--markdown", action="store_true", help="print the README's configuration table")


def run(args: argparse.Namespace) -> int:
    print(markdown_table() if args.markdown else args.settings)
    return 0
