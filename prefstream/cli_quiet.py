"""Keep Kafka client libraries' log lines out of the terminal commands (`produce`, `tail`, `profile`, `doctor`).

kafka-python and aiokafka log every retry, metadata miss and slow poll, httpx every request; a person at a terminal needs none
of it, because every failure that matters ends the command in one line of its own. The records are still
made (`prefstream.kafka.security.client_errors` reads them to name a failure's cause); only the handlers
drop them. With PREFSTREAM_LOG_LEVEL=debug they are shown again.
"""

from __future__ import annotations

import logging

LIBRARIES = frozenset({"kafka", "aiokafka", "httpx", "httpcore"})


class _DropLibraries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] not in LIBRARIES


def quiet_client_libraries(log_level: str) -> None:
    """Drop the Kafka client libraries' records at every root handler unless the log level asks for debugging."""
    if log_level.lower() == "debug":
        return
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropLibraries())
