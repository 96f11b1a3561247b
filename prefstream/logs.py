"""Structured logging for every prefstream process: JSON lines in production, readable in a terminal.

User text never goes into a log line: log ids, counts, sizes and timings. User ids are logged as a
short keyed hash (`user_ref`) so an operator can follow one user through the logs without the log
holding the identifier itself.
"""

from __future__ import annotations

import hashlib
import logging
import sys

import structlog


class _Stderr:
    """Whatever `sys.stderr` is at write time (test runners swap and close the captured one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(fmt: str = "json", level: str = "info") -> None:
    """Route structlog (and stdlib logging, which faust and aiokafka use) to stderr in one format."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_Stderr())  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer,
        ])  # fmt: skip
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.lower() != "debug":
        # Client libraries narrate every connection at INFO; keep their warnings and errors only.
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def user_ref(user_id: str) -> str:
    """A short, stable, non-reversible reference to a user for log lines."""
    return hashlib.blake2b(user_id.encode(), digest_size=6, person=b"prefstream").hexdigest()
