"""Dead letters: rejected input on `PREFSTREAM_DLQ_TOPIC`, with the original key and value bytes verbatim.

The reason travels in headers, as Kafka Connect's `errors.deadletterqueue.context.headers.enable` does
(`__connect.errors.topic`, `.partition`, `.offset`, `.exception.message`, ...), under our own prefix, so a
message of the largest accepted size still fits (nothing is added to the value) and can be replayed by
producing key and value back to the source topic. All header values are UTF-8 text:

    prefstream.error.code        stable code (`schemas.errors.RejectCode`), e.g. `too_long`
    prefstream.error.path        JSON path of the offending field, e.g. `$.shown[3].text` (`$`: whole message)
    prefstream.error.message     readable explanation; never quotes the rejected value
    prefstream.error.topic       source topic
    prefstream.error.partition   source partition, decimal
    prefstream.error.offset      source offset, decimal
    prefstream.error.timestamp   when it was rejected, RFC 3339 UTC with milliseconds
    prefstream.error.schema_version   version of this header set (1)
    prefstream.error.id          stable id of the rejected message: `<topic>/<partition>/<offset>` of its
                                 source position; a replay after a crash that still writes the dead letter
                                 again carries the same id (dedupe on it; docs/reliability.md)
    prefstream.error.value_omitted   only when the message was too large for the dead-letter topic: its
                                 size in bytes; the value is then null and the original stays on the source
                                 topic at the position `id` names (while its retention keeps it)

Model failures do not come here: see `schemas.failures.FailureRecord` on `PREFSTREAM_FAILURES_TOPIC`.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from prefstream.schemas.failures import FailureRecord, decode_failure, encode_failure
from prefstream.schemas.timefmt import ms_to_rfc3339

__all__ = [
    "DLQ_HEADER_PREFIX",
    "DLQ_MAX_MESSAGE_BYTES",
    "VALUE_OMITTED_HEADER",
    "DLQ_SCHEMA_VERSION",
    "FailureRecord",
    "dead_letter_headers",
    "dead_letter_id",
    "decode_failure",
    "encode_failure",
    "parse_dead_letter_headers",
]

DLQ_HEADER_PREFIX: Final = "prefstream.error."
VALUE_OMITTED_HEADER: Final = DLQ_HEADER_PREFIX + "value_omitted"
#: `max.message.bytes` of the dead-letter topic and the worker's producer request limit: above the 1 MiB
#: a Kafka client sends by default, so that a message of the largest size an app can produce still
#: fits with its key and headers.
DLQ_MAX_MESSAGE_BYTES: Final = 2 * 1024 * 1024
DLQ_SCHEMA_VERSION: Final = 1
HEADER_NAMES: Final = ("code", "path", "message", "topic", "partition", "offset", "timestamp", "schema_version", "id")


def dead_letter_headers(
    code: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    now: dt.datetime | float,
    *,
    path: str = "$",
) -> list[tuple[str, bytes]]:
    """The headers of one dead letter. `now` is an aware datetime or epoch seconds (`time.time()`)."""
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        seconds = now.timestamp()
    else:
        seconds = float(now)
    values = {
        "code": str(code),
        "path": path,
        "message": message,
        "topic": topic,
        "partition": str(int(partition)),
        "offset": str(int(offset)),
        "timestamp": ms_to_rfc3339(int(seconds * 1000)),
        "schema_version": str(DLQ_SCHEMA_VERSION),
        "id": dead_letter_id(topic, partition, offset),
    }
    return [(DLQ_HEADER_PREFIX + name, values[name].encode("utf-8")) for name in HEADER_NAMES]


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """The stable id of the dead letter of the message at (topic, partition, offset)."""
    return f"{topic}/{int(partition)}/{int(offset)}"


def parse_dead_letter_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """Our headers of a dead letter, by short name (`code`, `path`, ...); other headers are ignored."""
    out: dict[str, str] = {}
    for name, value in headers or []:
        if name.startswith(DLQ_HEADER_PREFIX):
            out[name[len(DLQ_HEADER_PREFIX) :]] = value.decode("utf-8", errors="replace")
    return out
