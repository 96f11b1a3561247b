"""`prefstream settings [--markdown]`: the effective settings by section (secrets masked), or the README table."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping

from prefstream.settings import Settings, _sections, markdown_table

MASK = "***"


def render(settings: Settings, environ: Mapping[str, str]) -> str:
    """One line per setting, grouped by section: variable, effective value, and whether the environment
    set it. A secret that is set shows as `***`; one that is not shows as `(unset)`."""
    lines: list[str] = []
    width = max(len(f.metadata["env"]) for _, cls in _sections() for f in dataclasses.fields(cls) if "env" in f.metadata)
    for name, cls in _sections():
        section = getattr(settings, name)
        lines.append(f"[{name}] {(cls.__doc__ or '').strip()}")
        for f in dataclasses.fields(cls):
            env = f.metadata.get("env")
            if env is None:
                continue
            value = getattr(section, f.name)
            if value is None:
                shown = "(unset)"
            elif f.metadata["secret"]:
                shown = MASK
            else:
                shown = str(value)
            source = "  (from the environment)" if env in environ else ""
            lines.append(f"  {env:<{width}}  {shown}{source}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--markdown", action="store_true", help="print the README's configuration table")


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
    else:
        print(render(args.settings, os.environ), end="")
    return 0
