"""`prefstream tail`: follow profile updates on the profiles topic, readable or as JSON lines."""

from __future__ import annotations

import argparse
import sys

from prefstream import render
from prefstream.client.config import ClientConfig
from prefstream.client.reader import ProfileReader
from prefstream.cli_quiet import quiet_client_libraries
from prefstream.exit_codes import ExitCode
from prefstream.profile_cli import check_tenant


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("--json", action="store_true", help="one JSON line per update (the profile record)")
    parser.add_argument(
        "--from-beginning", action="store_true",
        help="first print every current profile (the compacted topic from its start), then follow",
    )  # fmt: skip
    parser.add_argument("--user", action="append", default=[], metavar="USER", help="only this user (repeatable)")
    parser.add_argument("--tenant", default=None, metavar="T", help="only users of tenant T (--user: T's users)")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="exit after N updates")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S", help="exit after S seconds without one")


def run(args: argparse.Namespace) -> int:
    quiet_client_libraries(args.settings.worker.log_level if args.settings else "info")
    check_tenant(args.tenant)
    config = ClientConfig.from_env()
    users = set(args.user)
    shown = 0
    show = render.change_json if args.json else render.change_text
    with ProfileReader(config, from_beginning=args.from_beginning) as reader:
        if args.count is not None and args.count <= 0:
            return ExitCode.OK
        try:
            for change in reader.changes(idle_timeout_s=args.idle_exit):
                if users and change.user_id not in users:
                    continue
                if args.tenant is not None and change.tenant != args.tenant:
                    continue
                print(show(change), flush=True)
                shown += 1
                if args.count is not None and shown >= args.count:
                    break
        except BrokenPipeError:
            sys.stderr.close()  # `prefstream tail | head`: the reader left; stop quietly
    return ExitCode.OK
