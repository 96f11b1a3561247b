"""`prefstream parked [--json] [--api URL]`: list the users whose updates stopped after repeated failures.

Asks a running worker's read API (`GET /parked`), which gathers every worker's parked users. A parked
user keeps its pending events; `prefstream redrive USER` (or `prefstream redrive` for all) retries them.
"""

from __future__ import annotations

import argparse
import sys

import msgspec

from prefstream.streams import readapi
from prefstream.streams.userstate import ParkedList


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--api", metavar="URL", help="a worker's read API (default: PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")


def render(listing: ParkedList) -> str:
    """A table of parked users, then a line that says what to do."""
    lines = []
    if listing.parked:
        lines.append(f"{'user':<32} {'partition':>9} {'pending':>7} {'attempts':>8}  last failure")
        for s in listing.parked:
            lines.append(f"{s.user_id:<32} {s.partition:>9} {s.pending_events:>7} {s.attempts:>8}  {s.last_failure}")
        lines.append(f"{len(listing.parked)} parked user(s); `prefstream redrive USER` retries one, "
                     "`prefstream redrive` all")  # fmt: skip
    else:
        lines.append("no parked users")
    if listing.unreachable:
        lines.append(f"incomplete: no answer from {', '.join(listing.unreachable)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    listing = readapi.get(args.api or readapi.default_url(args.settings), "/parked", ParkedList)
    if args.json:
        sys.stdout.write(msgspec.json.encode(listing).decode() + "\n")
    else:
        print(render(listing))
    return 1 if listing.unreachable else 0
