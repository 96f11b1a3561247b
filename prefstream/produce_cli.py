"""`prefstream produce FILE.jsonl`: validate every line as the worker would, then send them all.

One event (a JSON object) per line; blank lines are skipped; `-` reads stdin. Nothing is sent unless every
line is valid: each bad line is reported with its number and the worker's reject code (exit 3). Sending
uses the client `Producer` (keyed by the user key, the worker's partitioner, acks=all), with a progress bar on a
terminal and an optional `--rate` in events per second. Events the broker did not acknowledge are
reported (exit 4); sending the file again is safe, because each event_id is applied once.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Final

from prefstream.client.config import ClientConfig
from prefstream.client.errors import DeliveryError
from prefstream.client.wire import RECORD_OVERHEAD_BYTES, Prepared, validate
from prefstream.errors import PrefstreamError
from prefstream.cli_quiet import quiet_client_libraries
from prefstream.exit_codes import ExitCode
from prefstream.schemas.errors import EventRejected

#: Bad lines reported one by one; beyond this, a count.
MAX_REPORTED: Final = 20


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("file", metavar="FILE.jsonl", help="one event per line (JSON); - for stdin")
    parser.add_argument("--rate", type=float, default=None, metavar="N", help="send at most N events per second")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the default when not a terminal)")


def _read(name: str) -> list[tuple[int, bytes]]:
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise PrefstreamError(f"cannot read {name}: {exc.strerror or exc}") from None
    return [(n, line.rstrip(b"\r")) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]


def check_lines(lines: list[tuple[int, bytes]], config: ClientConfig) -> tuple[list[Prepared], list[str]]:
    """Validate every line with the worker's decoder: the valid events, and one message per bad line."""
    good, bad = [], []
    for number, line in lines:
        try:
            good.append(validate(line, config.limits))
        except EventRejected as exc:
            bad.append(f"line {number}: {exc}")
    return good, bad


def run(args: argparse.Namespace) -> int:
    quiet_client_libraries(args.settings.worker.log_level if args.settings else "info")
    if args.rate is not None and args.rate <= 0:
        raise PrefstreamError(f"--rate must be above 0, got {args.rate}")
    config = ClientConfig.from_env()
    lines = _read(args.file)
    events, bad = check_lines(lines, config)
    if bad:
        for message in bad[:MAX_REPORTED]:
            print(f"{args.file}: {message}", file=sys.stderr)
        if len(bad) > MAX_REPORTED:
            print(f"{args.file}: ... and {len(bad) - MAX_REPORTED} more bad lines", file=sys.stderr)
        print(f"prefstream produce: {len(bad)} of {len(lines)} lines are not valid events; nothing was sent",
              file=sys.stderr)  # fmt: skip
        return ExitCode.BAD_INPUT
    if not events:
        print(f"prefstream produce: {args.file} holds no events; nothing was sent", file=sys.stderr)
        return ExitCode.OK
    return _send(args, config, events)


def _send(args: argparse.Namespace, config: ClientConfig, events: list[Prepared]) -> int:
    from tqdm import tqdm

    from prefstream.client.producer import Producer

    failures: list[DeliveryError] = []
    started = time.monotonic()
    with Producer(config, on_error=failures.append) as producer:
        # The topic's own size limit is known only once connected: check it before the first send, too.
        too_large = [e.event_id for e in events if producer.max_message_bytes is not None
                     and len(e.value) > producer.max_message_bytes - RECORD_OVERHEAD_BYTES]  # fmt: skip
        if too_large:
            raise PrefstreamError(
                f"{len(too_large)} events (first {too_large[0]}) exceed the events topic's max.message.bytes "
                f"({producer.max_message_bytes}); nothing was sent"
            )
        bar = tqdm(total=len(events), unit="event", disable=True if args.no_progress else None, file=sys.stderr)
        with bar:
            for i, event in enumerate(events):
                if args.rate is not None:
                    wait = started + i / args.rate - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                producer.send(event.value)
                bar.update(1)
        producer.flush()
    elapsed = time.monotonic() - started
    if failures:
        ids = [i for f in failures for i in f.event_ids]
        print(f"prefstream produce: {len(ids)} of {len(events)} events not delivered to {config.topics.events} "
              f"(first {ids[0]}: {failures[0].cause}); check the broker (`prefstream doctor`) and send the file "
              "again (each event_id is applied once)", file=sys.stderr)  # fmt: skip
        return ExitCode.NOT_DELIVERED
    print(f"sent {len(events)} events to {config.topics.events} in {elapsed:.1f} s")
    return ExitCode.OK
