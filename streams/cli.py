"""`prefstream worker`: run one stream worker.

Start-up order (each step fails loudly, before the worker joins its consumer group):

1. read the settings (`PREFSTREAM_MODEL_BACKEND` is required: no silent default);
2. refuse to start on state of a release before 0.2.0 that was not migrated (`check_state_layout`);
   check the topics: create missing ones, refuse to start when a partition count changed or the
   profiles topic is not compacted (`prefstream.topics.check_topics`);
3. build and start the model backend (ready means the backend is up);
4. run the faust worker until SIGTERM/SIGINT; then in-flight updates are aborted (their events are
   still pending in the tables and will be asked for again by whoever owns them next). A fatal
   condition (dead backend, a bug, an unreadable offset gap) stops the worker with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import faulthandler
import sys

from prefstream.settings import Settings


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--web-port", type=int, help="override PREFSTREAM_WEB_PORT")
    parser.add_argument("--data-dir", help="override PREFSTREAM_DATA_DIR")


def check_state_layout(settings: Settings) -> None:
    """Raise `UnmigratedStateError` when a legacy changelog (releases before 0.2.0) has records and the
    state changelog has none: this release would start from empty state and rebuild nothing of it.
    Offsets only (no record is read)."""
    import structlog

    from prefstream.streams.errors import UnmigratedStateError
    from prefstream.streams.migrate import changelog_counts
    from prefstream.streams.topology import internal_topics, legacy_changelogs

    counts = changelog_counts(settings)
    legacy = {t: counts[t] for t in legacy_changelogs(settings) if counts.get(t)}
    if not legacy:
        return
    state = internal_topics(settings)["state"]
    if not counts.get(state):
        found = ", ".join(f"{t} ({n} records)" for t, n in legacy.items())
        raise UnmigratedStateError(
            f"refusing to start: state of a release before 0.2.0 in {found} and none in {state}; stop every "
            "worker, run `prefstream state migrate`, then start the workers (docs/reliability.md, 'Upgrading state')"
        )
    # Migrated: the legacy changelogs are no longer read, and a forget does not reach them.
    structlog.get_logger(__name__).warning("legacy_changelogs_present", topics=sorted(legacy),
                                           hint="delete them: prefstream state migrate --delete-legacy")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from prefstream.models.backends import create_backend
    from prefstream import logs
    from prefstream.topics import check_topics
    from prefstream.streams.app import StreamApp
    from prefstream.streams.topology import internal_topic_specs

    settings: Settings = args.settings
    worker_settings = settings.worker
    if args.web_port is not None:
        worker_settings = dataclasses.replace(worker_settings, web_port=args.web_port)
    if args.data_dir is not None:
        from pathlib import Path

        worker_settings = dataclasses.replace(worker_settings, data_dir=Path(args.data_dir))
    settings = dataclasses.replace(settings, worker=worker_settings)
    settings.model.require_backend()
    # A native crash (RocksDB, a C extension) would otherwise end the process without a word.
    faulthandler.enable()
    logs.configure(settings.worker.log_format, settings.worker.log_level)
    (settings.worker.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    check_state_layout(settings)
    check_topics(settings, extra=internal_topic_specs(settings))
    backend = create_backend(settings)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stream_app = StreamApp(settings, backend, loop=loop)
    # The backend starts before the worker joins its group; readiness reports it.
    loop.run_until_complete(stream_app.start_backend())
    worker = stream_app.worker(loglevel=settings.worker.log_level, log_format=settings.worker.log_format)
    try:
        worker.execute_from_commandline()  # raises SystemExit when the worker has stopped
    except SystemExit as stop:
        if stream_app.fatal is None:
            raise
        del stop
    fatal = stream_app.fatal
    if fatal is not None:
        from prefstream.errors import PrefstreamError

        # Only our own errors' messages are printed: a third-party message might quote user input.
        why = f"{type(fatal).__name__}: {fatal}" if isinstance(fatal, PrefstreamError) else type(fatal).__name__
        print(f"prefstream worker: stopped: {why} (the log above has details; a restart resumes from the "
              "committed offsets)", file=sys.stderr)  # fmt: skip
        return 1
    return 0
