"""`prefstream worker` with faust's `broker_credentials` wired in: a stand-in until streams/app.py does it.

streams/app.py's `faust_options()` does not pass `broker_credentials` yet; this wrapper adds exactly
the line it needs (`"broker_credentials": faust_credentials(settings.kafka)`) and runs the ordinary
worker CLI. Delete it once `faust_options()` has that line.
"""

from __future__ import annotations

from typing import Any

import streams.app
from prefstream.kafka.security import faust_credentials
from prefstream.settings import Settings

_faust_options = streams.app.faust_options


def faust_options(settings: Settings) -> dict[str, Any]:
    return {**_faust_options(settings), "broker_credentials": faust_credentials(settings.kafka)}


if __name__ == "__main__":
    streams.app.faust_options = faust_options  # StreamApp looks it up in the module at construction

    from prefstream.cli import main

    raise SystemExit(main(["worker"]))
