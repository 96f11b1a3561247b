"""How every Kafka client prefstream creates authenticates: one translation of `KafkaSettings`.

The three client libraries spell the same settings differently: kafka-python (topics, redrive, demo,
tests) takes `ssl_cafile`/`ssl_certfile`/...; aiokafka takes an `ssl_context`; faust takes one
`broker_credentials` object that its aiokafka driver maps back to aiokafka's arguments
(`faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth`). Keeping the three here means a
worker and the tools beside it can never disagree on TLS verification or on the SASL mechanism.

Nothing here logs: the password is passed to the client and nowhere else.
"""

from __future__ import annotations

import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefstream.errors import KafkaConnectError
from prefstream.settings import KafkaSettings, Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


def kafka_python_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
    kwargs: dict[str, Any] = {
        "security_protocol": kafka.security_protocol,
        # A broker that accepts connections but never completes a handshake (wrong protocol or port)
        # fails within the connect timeout instead of kafka-python's 30 s default.
        "bootstrap_timeout_ms": int(kafka.connect_timeout_s * 1000),
    }
    if kafka.uses_sasl:
        kwargs.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,  # kafka-python's name for the SCRAM user too
            sasl_plain_password=kafka.sasl_password,
        )
    if kafka.uses_tls:
        # kafka-python builds a TLS >= 1.2 client context that verifies the chain (system CAs when no
        # CA file is named) and, unless told otherwise, the host name.
        kwargs.update(
            ssl_cafile=_str(kafka.ssl_cafile),
            ssl_certfile=_str(kafka.ssl_certfile),
            ssl_keyfile=_str(kafka.ssl_keyfile),
            ssl_check_hostname=kafka.ssl_check_hostname,
        )
    return kwargs


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The client TLS context of aiokafka and faust (None when the protocol does not use TLS)."""
    if not kafka.uses_tls:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(
            cafile=_str(kafka.ssl_cafile), certfile=_str(kafka.ssl_certfile), keyfile=_str(kafka.ssl_keyfile)
        )
    except (ssl.SSLError, OSError) as exc:
        # A file that exists but is not a PEM certificate or key (settings checked that it exists).
        raise KafkaConnectError(f"cannot load the Kafka TLS files ({type(exc).__name__}: {exc.strerror or exc})") from None
    # create_ssl_context always checks host names; the chain is verified regardless (CERT_REQUIRED).
    context.check_hostname = kafka.ssl_check_hostname
    return context


def aiokafka_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    kwargs: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.uses_sasl:
        kwargs.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password,
        )
    if kafka.uses_tls:
        kwargs["ssl_context"] = ssl_context(kafka)
    return kwargs


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """faust's `broker_credentials` (None for PLAINTEXT).

    faust-streaming 0.15.3 maps `SASLCredentials(username, password, mechanism, ssl_context)` to
    aiokafka's security_protocol (SASL_SSL when a context is given, else SASL_PLAINTEXT), sasl_mechanism,
    sasl_plain_username/password and ssl_context, for the worker's consumer, producers (also the
    threaded and transactional ones) and topic creation; and `SSLCredentials(context)` to SSL.
    """
    if kafka.security_protocol == "PLAINTEXT":
        return None
    import faust

    context = ssl_context(kafka)
    if kafka.uses_sasl:
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,  # None for SASL_PLAINTEXT: faust then says SASL_PLAINTEXT
        )
    assert context is not None  # SSL
    return faust.SSLCredentials(context)


def describe(kafka: KafkaSettings) -> str:
    """How prefstream connects, for messages: protocol, mechanism and user, never the password."""
    if kafka.uses_sasl:
        return f"{kafka.security_protocol} ({kafka.sasl_mechanism}, user {kafka.sasl_username!r})"
    return kafka.security_protocol


class _HeldRecords(logging.Handler):
    """Holds kafka-python's log records while a client is in use.

    kafka-python retries a failed bootstrap (refused TLS, failed SASL authentication) until its
    bootstrap timeout, logging an error per attempt, and then raises only
    `KafkaTimeoutError("Unable to bootstrap ...")`. Holding the records lets a failure end in one
    line that names the cause (taken from them); on success they are passed on unchanged.
    """

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def cause(self) -> str:
        return " ".join(r.getMessage() for r in self.records[-200:] if r.levelno >= logging.WARNING)


def _address(hostport: str) -> tuple[str, int]:
    host, sep, port = hostport.strip().rpartition(":")
    if not sep or not port.isdigit():
        return hostport.strip().strip("[]"), 9092  # kafka-python's default port
    return host.strip("[]"), int(port)


def _reach(hostport: str, timeout: float) -> str | None:
    """None when a TCP connection to `hostport` opens within `timeout`, else why not (a few words)."""
    host, port = _address(hostport)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return "unknown host"
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except ConnectionRefusedError:
        return "connection refused"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def probe(kafka: KafkaSettings) -> None:
    """Raise one `KafkaConnectError` line when no bootstrap address accepts a TCP connection.

    kafka-python would retry an unreachable address until its bootstrap timeout and then name no
    cause; a plain connection attempt says within `PREFSTREAM_KAFKA_CONNECT_TIMEOUT_S` whether the
    address is wrong (unknown host), nothing listens there (refused) or a firewall drops it (no answer).
    """
    addresses = [a.strip() for a in kafka.bootstrap_servers.split(",") if a.strip()]
    with ThreadPoolExecutor(max_workers=max(1, len(addresses))) as pool:
        why = list(pool.map(lambda a: _reach(a, kafka.connect_timeout_s), addresses))
    if any(w is None for w in why):
        return
    causes = ", ".join(f"{a}: {w}" for a, w in zip(addresses, why, strict=True))
    raise KafkaConnectError(
        f"cannot reach Kafka at {kafka.bootstrap_servers} ({causes}); check KAFKA_BOOTSTRAP_SERVERS and that the "
        "broker runs (`prefstream kafka up` starts a local one)"
    )


@contextmanager
def client_errors(kafka: KafkaSettings) -> Iterator[None]:
    """Around kafka-python client use: an unreachable broker and any KafkaError become one
    `KafkaConnectError` line."""
    from kafka.errors import KafkaError

    probe(kafka)
    held = _HeldRecords()
    client_logger = logging.getLogger("kafka")
    client_logger.addHandler(held)
    propagate, client_logger.propagate = client_logger.propagate, False
    failed = False
    try:
        yield
    except KafkaError as exc:
        failed = True
        raise connect_error(kafka, exc, held.cause()) from None
    finally:
        client_logger.removeHandler(held)
        client_logger.propagate = propagate
        if not failed:
            for record in held.records:
                logging.getLogger().handle(record)


def connect_error(kafka: KafkaSettings, exc: BaseException, cause: str = "") -> KafkaConnectError:
    """One line for a client that could not connect, authenticate or act (instead of a traceback).

    Only the exception's class name is shown: kafka-python's messages embed whole requests.
    """
    name = type(exc).__name__
    text = f"{name} {cause}".lower()
    if "authenticationfailed" in text or "authentication failed" in text:
        hint = "authentication failed; check PREFSTREAM_KAFKA_SASL_USERNAME, PREFSTREAM_KAFKA_SASL_PASSWORD and " \
               "PREFSTREAM_KAFKA_SASL_MECHANISM"  # fmt: skip
    elif "authorization" in text:
        hint = "not authorized: the user lacks an ACL (docs/reliability.md lists the ones prefstream needs)"
    elif any(tls in text for tls in ("certificate", "sslerror", "ssl:", "handshake")):  # not "KafkaSSLTransport"
        hint = "TLS failed; check PREFSTREAM_KAFKA_SSL_CAFILE, PREFSTREAM_KAFKA_SSL_CHECK_HOSTNAME and " \
               "PREFSTREAM_KAFKA_SECURITY_PROTOCOL"  # fmt: skip
    elif "unable to bootstrap" in f"{exc}".lower() or "nobrokersavailable" in text:
        hint = "no broker answered; check KAFKA_BOOTSTRAP_SERVERS and PREFSTREAM_KAFKA_SECURITY_PROTOCOL"
    else:
        hint = "the request failed"
    return KafkaConnectError(f"Kafka at {kafka.bootstrap_servers} over {describe(kafka)}: {hint} ({name})")


def _str(path: object) -> str | None:
    return None if path is None else str(path)


@dataclass(frozen=True)
class AclRule:
    """One ACL a deployment grants to a principal (names as Kafka's CLI and kafka-python spell them)."""

    resource: str  # TOPIC, GROUP or CLUSTER
    name: str
    pattern: str  # LITERAL or PREFIXED
    operations: tuple[str, ...]
    why: str


def worker_acls(settings: Settings) -> list[AclRule]:
    """What `prefstream worker` does on Kafka (docs/reliability.md; granted verbatim by the security tests).

    The worker checks (and creates when missing) every topic at start (`prefstream.topics.check_topics`:
    Describe, DescribeConfigs, Create), consumes events and its internal topics in the consumer group
    `{app_id}`, and produces profiles, dead letters, failures, update records and internal records. Its producer is
    not idempotent (faust's at_least_once), so it needs no IdempotentWrite.
    """
    t, app_id = settings.topics, settings.worker.app_id
    check = ("DESCRIBE", "DESCRIBE_CONFIGS", "CREATE")
    return [
        AclRule("TOPIC", t.events, "LITERAL", ("READ", *check), "consume events"),
        *(AclRule("TOPIC", name, "LITERAL", ("WRITE", *check), "publish") for name in (t.profiles, t.dlq, t.failures, t.updates)),
        AclRule("TOPIC", f"{app_id}-", "PREFIXED", ("READ", "WRITE", *check),
                "internal topics: repartition, results, table changelogs, faust's leader topic"),
        AclRule("GROUP", app_id, "LITERAL", ("READ",), "the worker's consumer group (join, commit offsets)"),
    ]  # fmt: skip


def redrive_acls(settings: Settings) -> list[AclRule]:
    """`prefstream redrive` produces to the internal results topic (kafka-python, idempotent producer)."""
    return [AclRule("TOPIC", f"{settings.worker.app_id}-results", "LITERAL", ("WRITE", "DESCRIBE"), "redrive")]


def client_acls(settings: Settings, group: str) -> list[AclRule]:
    """An app: produces events, reads profiles (as consumer group `group`, if it uses one)."""
    t = settings.topics
    return [
        AclRule("TOPIC", t.events, "LITERAL", ("WRITE", "DESCRIBE"), "publish events"),
        AclRule("TOPIC", t.profiles, "LITERAL", ("READ", "DESCRIBE"), "read profiles"),
        AclRule("GROUP", group, "LITERAL", ("READ",), "commit its read position (only with a group)"),
    ]
