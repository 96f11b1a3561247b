"""Errors of the stream worker.

    PrefstreamError
    └── StreamsError                 anything streams/ raises on purpose
        ├── PartitionCountChanged    a topic's partition count differs from PREFSTREAM_PARTITIONS
        ├── InternalRecordError      an internal record (repartition, result, command) cannot be read
        ├── IncompatibleLibraryError faust changed under a fix prefstream applies to it
        ├── UnmigratedStateError     state written by an older release needs `prefstream state migrate`
        ├── MigrationRefused         `prefstream state migrate` will not run now (workers up, already migrated)
        └── ReadApiError             a command could not ask a worker's read API (not running, wrong URL)

Per-event problems never raise out of the agent: invalid events go to the dead-letter topic, failed
model updates become failure records. Only these fatal conditions stop the worker.
"""

from __future__ import annotations

from prefstream.errors import PrefstreamError


class StreamsError(PrefstreamError):
    """Root of the errors raised by streams/."""


class PartitionCountChanged(StreamsError):
    """A topic the worker consumes has a partition count other than PREFSTREAM_PARTITIONS."""

    def __init__(self, topic: str, found: int, expected: int) -> None:
        super().__init__(
            f"topic {topic!r} has {found} partitions, PREFSTREAM_PARTITIONS is {expected}: per-user state lives in "
            "partition murmur2(user_id) % partitions, so the count is fixed at creation (docs/streams.md, "
            "'Changing the partition count')"
        )
        self.topic, self.found, self.expected = topic, found, expected


class InternalRecordError(StreamsError):
    """A record on one of prefstream's internal topics cannot be decoded (a bug or a foreign writer)."""


class IncompatibleLibraryError(StreamsError):
    """The installed faust-streaming no longer has what `streams.faust_fixes` patches: re-check the fix."""


class UnmigratedStateError(StreamsError):
    """The worker found state of an older layout that has not been migrated."""


class MigrationRefused(StreamsError):
    """`prefstream state migrate` refuses to run: it could lose or overwrite state (`streams.migrate`)."""


class ReadApiError(StreamsError):
    """A command could not get an answer from a worker's read API."""


def too_large(exc: BaseException) -> bool:
    """Whether a send failed because the message is larger than the producer or the topic takes
    (faust wraps the client's error in ProducerSendError)."""
    from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

    kinds = (MessageSizeTooLargeError, RecordTooLargeError)
    return isinstance(exc, kinds) or isinstance(exc.__cause__, kinds)
