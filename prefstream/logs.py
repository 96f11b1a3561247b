"""Structured logging for every prefstream process: JSON lines in production, readable in a terminal.

User text never goes into a log line: log ids, counts, sizes and timings. User ids are logged as a
short keyed hash (`user_ref`) so an operator can follow one user through the logs without the log
holding the identifier itself.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys

import structlog


class _Stderr:
    """Whatever `sys.stderr` is at write time (test runners swap and close the captured one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _renderer(fmt: str) -> structlog.types.Processor:
    return structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)


# `key: value` / `key=value` pairs whose key names a password or key, as client libraries print their
# configuration (kafka-python's admin client logs its whole config, SASL password included, at DEBUG).
_SECRET_PAIR = re.compile(r"""(?i)(\w*(?:password|api_key)['"]?\s*[:=]\s*)('[^']*'|"[^"]*"|[^\s,)}]+)""")


class _RedactSecrets(logging.Filter):
    """Masks password values in third-party log records before they are rendered."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_PAIR.sub(r"\1'***'", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def stdlib_handler(fmt: str = "json") -> logging.Handler:
    """A stdlib handler that renders records (faust's, aiokafka's) the same way as structlog's own lines."""
    handler = logging.StreamHandler(_Stderr())  # type: ignore[arg-type]
    handler.addFilter(_RedactSecrets())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_SHARED, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(fmt),
        ])  # fmt: skip
    )
    return handler


def stdlib_logging_config(fmt: str, level: str) -> dict[str, object]:
    """A `logging.config.dictConfig` for processes whose framework configures logging itself (faust's
    Worker replaces the root handlers at start): the same handler, the same quiet client libraries."""
    quiet = "WARNING" if level.lower() != "debug" else "DEBUG"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"default": {"()": "prefstream.logs.stdlib_handler", "fmt": fmt}},
        "root": {"level": level.upper(), "handlers": ["default"]},
        "loggers": {name: {"level": quiet} for name in ("kafka", "aiokafka")},
    }


def configure(fmt: str = "json", level: str = "info") -> None:
    """Route structlog (and stdlib logging, which faust and aiokafka use) to stderr in one format."""
    renderer = _renderer(fmt)
    shared = _SHARED
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [stdlib_handler(fmt)]
    root.setLevel(level.upper())
    if level.lower() != "debug":
        # Client libraries narrate every connection at INFO; keep their warnings and errors only.
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def user_ref(user_id: str) -> str:
    """A short, stable, non-reversible reference to a user for log lines."""
    return hashlib.blake2b(user_id.encode(), digest_size=6, person=b"prefstream").hexdigest()
