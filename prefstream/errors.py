"""prefstream's exception hierarchy.

    PrefstreamError
    ├── ConfigError            a setting is missing or malformed (start-up refuses)
    ├── KafkaSetupError        the local broker could not be fetched, started or stopped
    ├── KafkaConnectError      a Kafka client could not connect, authenticate or was not authorized
    ├── TopicMismatchError     an existing topic disagrees with what prefstream needs
    ├── schemas.errors.*       wire-format rejections (each with a stable code)
    └── models.errors.*        model backend failures (each with a reason)
"""


class PrefstreamError(Exception):
    """Root of every error prefstream raises on purpose."""


class ConfigError(PrefstreamError):
    """A setting is missing or malformed."""


class KafkaSetupError(PrefstreamError):
    """The local Kafka broker could not be fetched, formatted, started or stopped."""


class KafkaConnectError(PrefstreamError):
    """A Kafka client could not connect, complete TLS, authenticate, or was refused by an ACL."""


class TopicMismatchError(PrefstreamError):
    """An existing topic's partitions or configuration disagree with prefstream's needs."""
