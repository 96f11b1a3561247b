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

import contextlib
import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

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


# Records a client library logs at ERROR for a condition that is expected and retried: on every start
# against a fresh broker (or after a coordinator moves) aiokafka looks up the group coordinator before
# the broker has loaded __consumer_offsets and logs the answer at ERROR, then retries and succeeds.
# (logger, message template) -> the error class names (the record's first argument) that are transient.
TRANSIENT: dict[tuple[str, str], frozenset[str]] = {
    ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"): frozenset(
        {"GroupCoordinatorNotAvailableError", "GroupLoadInProgressError", "NotCoordinatorForGroupError"}
    ),
}


class _DemoteTransients(logging.Filter):
    """Logs the records `TRANSIENT` lists at INFO instead of ERROR (dropped when INFO is not enabled).

    A coordinator that stays unavailable still shows, at INFO and through `RepeatFilter`, and `/readyz`
    stays 503 until the group is joined; an ERROR at every normal start would teach operators to ignore
    errors.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        names = TRANSIENT.get((record.name, record.msg if isinstance(record.msg, str) else ""))
        args = record.args if isinstance(record.args, tuple) else ()
        if names and record.levelno > logging.INFO and args and type(args[0]).__name__ in names:
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


def stdlib_handler(fmt: str = "json", repeat_window_s: float | None = None) -> logging.Handler:
    """A stdlib handler that renders records (faust's, aiokafka's) the same way as structlog's own lines,
    with repeated records rate-limited (`RepeatFilter`; `repeat_window_s` None: the configured window)."""
    handler = logging.StreamHandler(_Stderr())  # type: ignore[arg-type]
    handler.addFilter(_DemoteTransients())
    handler.addFilter(_RedactSecrets())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=[
            *_SHARED, structlog.stdlib.ExtraAdder(allow=["suppressed"]),
        ], processors=[
            # format_exc_info: a library's logged exception becomes the line's `exception` text.
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
            _renderer(fmt),
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


class RootCauseFile(logging.Handler):
    """Writes the root cause of the first ERROR record to `path`, as one line `Type: message`.

    vLLM starts its engine core in a child process, which starts its workers in more; when a worker
    fails, each process above it logs its own "failed to start" and the parent only learns `Engine core
    initialization failed. See root cause above.` Every process logs through the `vllm` logger, which
    `vllm_logging_config` routes here too; the first error written (exclusive create) is the deepest.
    """

    def __init__(self, path: str) -> None:
        super().__init__(logging.ERROR)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            line = record.getMessage()
        else:
            while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
                exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
            line = f"{type(exc).__name__}: {exc}"
        try:
            with open(self.path, "x", encoding="utf-8") as out:
                out.write(" ".join(line.split())[:2000] + "\n")
        except FileExistsError:
            pass  # a deeper process already wrote the cause
        except OSError:
            self.handleError(record)


def vllm_logging_config(fmt: str, level: str, cause_path: str) -> dict[str, object]:
    """The logging config vLLM applies in every process it starts (`VLLM_LOGGING_CONFIG_PATH`): its
    loggers write through our handler (JSON lines like every other line of the worker, not vLLM's plain
    text), and errors also go to `RootCauseFile(cause_path)`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "prefstream": {"()": "prefstream.logs.stdlib_handler", "fmt": fmt},
            "cause": {"()": "prefstream.logs.RootCauseFile", "path": cause_path},
        },
        "loggers": {"vllm": {"handlers": ["prefstream", "cause"], "level": level.upper(), "propagate": False}},
    }


@contextlib.contextmanager
def route_vllm_logs(directory: str, cause_path: str) -> Iterator[None]:
    """Make vLLM log through prefstream's handler, in this process and the engine processes it spawns
    while the block runs (the engine start).

    Enter before vLLM is imported: vLLM reads the config file named by `VLLM_LOGGING_CONFIG_PATH` when
    `vllm.logger` is imported, in each process. The format and level are those `configure` was given.
    The variables are put back on exit: the file lives in `directory`, which the caller removes, and a
    process started later from this one (a `vllm serve`, a test's subprocess) must not inherit a path
    that no longer exists (vLLM refuses to start on it).
    """
    import json
    import logging.config

    config = vllm_logging_config(_format, _level, cause_path)
    path = os.path.join(directory, "vllm-logging.json")
    with open(path, "w", encoding="utf-8") as out:
        json.dump(config, out)
    names = ("VLLM_CONFIGURE_LOGGING", "VLLM_LOGGING_CONFIG_PATH")
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(VLLM_CONFIGURE_LOGGING="1", VLLM_LOGGING_CONFIG_PATH=path)
    if "vllm.logger" in sys.modules:  # already imported (and configured) in this process: apply it here too
        logging.config.dictConfig(config)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_format, _level = "json", "info"


def configure(fmt: str = "json", level: str = "info", repeat_window_s: float | None = None) -> None:
    """Route structlog (and stdlib logging, which faust and aiokafka use) to stderr in one format.

    `repeat_window_s` (PREFSTREAM_LOG_REPEAT_WINDOW_S) is kept for every stdlib handler made later in
    this process, including the one in `stdlib_logging_config`; None keeps the window already set.
    """
    global _repeat_window_s, _format, _level
    _format, _level = fmt, level
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
