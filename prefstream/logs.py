"""Structured logging for every prefstream process: JSON lines in production, readable in a terminal.

User text never goes into a log line: log ids, counts, sizes and timings. User ids are logged as a
short keyed hash (`user_ref`) so an operator can follow one user through the logs without the log
holding the identifier itself.

Repeated stdlib records are rate-limited (`RepeatFilter`, on every handler made here): during a broker
outage faust, aiokafka and kafka-python repeat the same few warnings and errors many times a second.
What is covered: every record that goes through stdlib `logging` -- faust's, aiokafka's, kafka-python's
and any other library's, at every level, and our own packages' stdlib records at WARNING and below.
What is not: ERROR and CRITICAL records from our own packages (never suppressed), and events logged
with `structlog.get_logger()` in our own code, which structlog writes straight to stderr
(`PrintLoggerFactory`) without passing through stdlib handlers.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

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


#: Loggers of our own packages: their ERROR and CRITICAL records are never suppressed.
OWN_PACKAGES = ("prefstream",)

#: Default of PREFSTREAM_LOG_REPEAT_WINDOW_S (see prefstream.settings.WorkerSettings).
DEFAULT_REPEAT_WINDOW_S = 10.0

# The window handlers made without an explicit one use: set by `configure` from the settings, so that
# the dictConfig that faust's Worker applies later (`stdlib_logging_config`) gets the same value.
_repeat_window_s = DEFAULT_REPEAT_WINDOW_S


def _own(name: str) -> bool:
    return any(name == pkg or name.startswith(pkg + ".") for pkg in OWN_PACKAGES)


def _template(msg: object) -> str:
    """What makes two records "the same kind": the format template, never the formatted text."""
    if isinstance(msg, str):
        return msg
    if isinstance(msg, dict):  # structlog's stdlib integration passes its event dict as msg
        return str(msg.get("event"))
    return type(msg).__qualname__  # e.g. `log.warning(exc)`: the text varies, the kind does not


class RepeatFilter(logging.Filter):
    """Let the first record of a kind through, then at most one per `window_s`.

    A kind is (logger name, level, the record's `msg` template), so a line repeated with different
    arguments (host, attempt number, error text) is still one kind. A record that passes after others of
    its kind were suppressed carries `suppressed=<count>` (rendered as a field of the line), so nothing
    is hidden silently. ERROR and CRITICAL records of our own packages always pass. At most `max_keys`
    kinds are remembered (least recently seen forgotten first; a forgotten kind starts afresh).
    `window_s <= 0` lets everything through.
    """

    def __init__(
        self,
        window_s: float = DEFAULT_REPEAT_WINDOW_S,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window_s = float(window_s)
        self.max_keys = max(1, int(max_keys))
        self._clock = clock
        self._lock = threading.Lock()  # kafka-python logs from its own threads
        # kind -> [time it last passed, records suppressed since]
        self._kinds: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.window_s <= 0:
            return True
        if record.levelno >= logging.ERROR and _own(record.name):
            return True
        key = (record.name, record.levelno, _template(record.msg))
        with self._lock:
            now = self._clock()
            entry = self._kinds.get(key)
            if entry is None:
                self._kinds[key] = [now, 0]
                while len(self._kinds) > self.max_keys:
                    self._kinds.popitem(last=False)
                return True
            self._kinds.move_to_end(key)
            if now - entry[0] < self.window_s:
                entry[1] += 1
                return False
            suppressed = int(entry[1])
            entry[0], entry[1] = now, 0
        if suppressed:
            record.suppressed = suppressed
        return True


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


def stdlib_handler(fmt: str = "json", repeat_window_s: float | None = None) -> logging.Handler:
    """A stdlib handler that renders records (faust's, aiokafka's) the same way as structlog's own lines,
    with repeated records rate-limited (`RepeatFilter`; `repeat_window_s` None: the configured window)."""
    handler = logging.StreamHandler(_Stderr())  # type: ignore[arg-type]
    handler.addFilter(_RedactSecrets())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=[
            *_SHARED, structlog.stdlib.ExtraAdder(allow=["suppressed"]),
        ], processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(fmt),
        ])  # fmt: skip
    )
    handler.addFilter(RepeatFilter(_repeat_window_s if repeat_window_s is None else repeat_window_s))
    return handler


def stdlib_logging_config(fmt: str, level: str, repeat_window_s: float | None = None) -> dict[str, object]:
    """A `logging.config.dictConfig` for processes whose framework configures logging itself (faust's
    Worker replaces the root handlers at start): the same handler, the same rate limit of repeated
    records, the same quiet client libraries. `repeat_window_s` None: the window `configure` was given."""
    quiet = "WARNING" if level.lower() != "debug" else "DEBUG"
    window = _repeat_window_s if repeat_window_s is None else repeat_window_s
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"default": {"()": "prefstream.logs.stdlib_handler", "fmt": fmt, "repeat_window_s": window}},
        "root": {"level": level.upper(), "handlers": ["default"]},
        "loggers": {name: {"level": quiet} for name in ("kafka", "aiokafka")},
    }


def configure(fmt: str = "json", level: str = "info", repeat_window_s: float | None = None) -> None:
    """Route structlog (and stdlib logging, which faust and aiokafka use) to stderr in one format.

    `repeat_window_s` (PREFSTREAM_LOG_REPEAT_WINDOW_S) is kept for every stdlib handler made later in
    this process, including the one in `stdlib_logging_config`; None keeps the window already set.
    """
    global _repeat_window_s
    if repeat_window_s is not None:
        _repeat_window_s = float(repeat_window_s)
    renderer = _renderer(fmt)
    shared = _SHARED
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [stdlib_handler(fmt, _repeat_window_s)]
    root.setLevel(level.upper())
    if level.lower() != "debug":
        # Client libraries narrate every connection at INFO; keep their warnings and errors only.
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def user_ref(user_id: str) -> str:
    """A short, stable, non-reversible reference to a user for log lines."""
    return hashlib.blake2b(user_id.encode(), digest_size=6, person=b"prefstream").hexdigest()
