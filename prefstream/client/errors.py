"""Errors of the client library.

    PrefstreamError
    ├── ConfigError, KafkaConnectError      (prefstream.errors: bad settings, broker unreachable or refusing)
    ├── schemas.errors.EventRejected        an event that the worker would dead-letter (code, path, message)
    └── ClientError
        ├── TopicMissingError               the events or profiles topic does not exist
        ├── BufferFullError                 more unacknowledged bytes than `max_buffered_bytes` for `max_block_s`
        ├── DeliveryError                   the broker did not acknowledge events (after the producer's retries)
        └── ReadApiError                    the worker's read API answered an error
            └── ReadApiUnreachable          no worker answered at the read API's address

Messages never carry user text: events are named by `event_id`, failures by the client library's error name.
"""

from __future__ import annotations

from prefstream.errors import PrefstreamError


class ClientError(PrefstreamError):
    """Root of the client library's own errors."""


class TopicMissingError(ClientError):
    """The topic the client was asked to use does not exist (the broker never creates topics by itself)."""


class BufferFullError(ClientError):
    """The producer held `max_buffered_bytes` of unacknowledged events for `max_block_s`: the broker is slow or gone."""


class DeliveryError(ClientError):
    """Events were not acknowledged by the broker. `event_ids` names them, `cause` is the Kafka error's name."""

    def __init__(self, message: str, event_ids: tuple[str, ...] = (), cause: str = "") -> None:
        super().__init__(message)
        self.event_ids = event_ids
        self.cause = cause


class ReadApiError(ClientError):
    """The worker's read API (`GET /profiles/{user_id}`) could not be reached or answered an error."""


class ReadApiUnreachable(ReadApiError):
    """No worker answered at the read API's address (connection refused, timed out, name not resolved)."""
