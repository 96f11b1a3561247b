"""`prefstream profile USER`: one user's current profile, from the read API, or from the topic when no worker answers."""

from __future__ import annotations

import argparse
import re
import sys

from prefstream import render
from prefstream.client.api import ProfileApi
from prefstream.client.config import ClientConfig
from prefstream.client.errors import ReadApiUnreachable
from prefstream.errors import PrefstreamError
from prefstream.cli_quiet import quiet_client_libraries
from prefstream.exit_codes import ExitCode
from prefstream.schemas.bounds import TENANT_PATTERN, USER_ID_PATTERN
from prefstream.schemas.keys import user_key
from prefstream.schemas.profiles import Profile


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("user", metavar="USER", help="the user_id")
    parser.add_argument("--tenant", default=None, metavar="T", help="the user's tenant, for a user of tenant T")
    parser.add_argument("--json", action="store_true", help="the profile record as JSON")
    parser.add_argument("--api", default=None, metavar="URL",
                        help="a worker's read API (default http://PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT)")  # fmt: skip
    parser.add_argument("--topic", action="store_true", help="read the profiles topic, not the read API")


def check_tenant(tenant: str | None) -> None:
    """Raise the one-line error for a `--tenant` that is not a tenant name (it could match no event)."""
    if tenant is not None and not re.fullmatch(TENANT_PATTERN, tenant):
        raise PrefstreamError(f"--tenant {tenant!r} is not a tenant (1-64 characters from A-Z a-z 0-9 . _ -, "
                              "starting with a letter or digit)")  # fmt: skip


def _from_topic(config: ClientConfig, user: str, tenant: str | None) -> Profile | None:
    from prefstream.client.reader import ProfileReader

    with ProfileReader(config) as reader:
        reader.catch_up()
        return reader.get(user, tenant)


def run(args: argparse.Namespace) -> int:
    quiet_client_libraries(args.settings.worker.log_level if args.settings else "info")
    if not re.fullmatch(USER_ID_PATTERN, args.user):
        raise PrefstreamError(f"{args.user!r} is not a user_id (1-128 characters from A-Z a-z 0-9 . _ - : @ + =)")
    check_tenant(args.tenant)
    config = ClientConfig.from_env()
    api_url = args.api or config.api_url
    if args.topic:
        profile, source = _from_topic(config, args.user, args.tenant), config.topics.profiles
    else:
        try:
            with ProfileApi(api_url) as api:
                profile, source = api.get(args.user, args.tenant), api_url
        except ReadApiUnreachable:
            print(f"prefstream profile: no worker answers at {api_url}; reading {config.topics.profiles} instead",
                  file=sys.stderr)  # fmt: skip
            profile, source = _from_topic(config, args.user, args.tenant), config.topics.profiles
    if profile is None:
        print(f"prefstream profile: no profile for {user_key(args.tenant, args.user)} (from {source}): no update "
              "applied yet, or forgotten", file=sys.stderr)  # fmt: skip
        return ExitCode.FAILED
    print(render.profile_json(profile) if args.json else render.profile_text(profile))
    return ExitCode.OK
