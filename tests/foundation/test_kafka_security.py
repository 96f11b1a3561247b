"""SASL/SCRAM-SHA-512 over TLS, end to end against a real broker that requires it.

The module starts its own secure single-node broker (the local runner's `LocalSecurity` mode: a
throwaway CA, a SASL_SSL listener, the StandardAuthorizer). The test user gets exactly the ACLs that
`prefstream.kafka.security` declares (and docs/reliability.md lists), so these tests also check
that those ACLs are enough.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefstream.errors import ConfigError, KafkaConnectError
from prefstream.kafka import local, security
from prefstream.settings import Settings

USER = "prefstream-test"


def _settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


# --- settings and the translation, no broker -----------------------------------------------------------


def test_plaintext_is_the_default_and_needs_nothing() -> None:
    """With no security settings every client is PLAINTEXT and faust gets no credentials."""
    kafka = _settings({}).kafka
    assert security.kafka_python_kwargs(kafka) == {"security_protocol": "PLAINTEXT", "bootstrap_timeout_ms": 5000}
    assert security.aiokafka_kwargs(kafka) == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials(kafka) is None


def test_sasl_ssl_translates_for_every_client(tmp_path: Path) -> None:
    """SASL_SSL + SCRAM-SHA-512 become kafka-python kwargs, aiokafka kwargs and faust SASLCredentials alike."""
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    ca = local.make_tls(tmp_path / "tls")[0]
    kafka = _settings({
        "PREFSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PREFSTREAM_KAFKA_SASL_USERNAME": "u",
        "PREFSTREAM_KAFKA_SASL_PASSWORD": "p", "PREFSTREAM_KAFKA_SSL_CAFILE": str(ca),
        "PREFSTREAM_KAFKA_SSL_CHECK_HOSTNAME": "false",
    }).kafka  # fmt: skip
    assert security.kafka_python_kwargs(kafka) == {
        "security_protocol": "SASL_SSL", "bootstrap_timeout_ms": 5000, "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p", "ssl_cafile": str(ca), "ssl_certfile": None, "ssl_keyfile": None,
        "ssl_check_hostname": False,
    }  # fmt: skip
    aio = security.aiokafka_kwargs(kafka)
    assert aio["sasl_mechanism"] == "SCRAM-SHA-512" and aio["ssl_context"].check_hostname is False
    credentials = security.faust_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    # What faust's driver hands to aiokafka equals what we hand to aiokafka ourselves.
    mapped = dict(credentials_to_aiokafka_auth(credentials))
    assert {k: v for k, v in mapped.items() if k != "ssl_context"} == {
        k: v for k, v in aio.items() if k != "ssl_context"
    }
    assert mapped["ssl_context"].check_hostname is False
    assert "p" not in repr(credentials).split("username=")[0] and "password" not in repr(kafka)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PREFSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs PREFSTREAM_KAFKA_SASL_USERNAME and PREFSTREAM_KAFKA_SASL_PASSWORD"),
        ({"PREFSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PREFSTREAM_KAFKA_SASL_USERNAME": "u"}, "needs PREFSTREAM_KAFKA_SASL_PASSWORD"),
        ({"PREFSTREAM_KAFKA_SASL_USERNAME": "u", "PREFSTREAM_KAFKA_SASL_PASSWORD": "p"}, "does not use SASL"),
        ({"PREFSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "PREFSTREAM_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "/nonexistent/ca.pem: no such file"),
        ({"PREFSTREAM_KAFKA_SSL_CAFILE": "/etc/hostname"}, "does not use TLS"),
        ({"PREFSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PREFSTREAM_KAFKA_SASL_USERNAME": "u",
          "PREFSTREAM_KAFKA_SASL_PASSWORD": "p", "PREFSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI"}, "expected one of SCRAM-SHA-512"),
        ({"PREFSTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl"}, "expected one of PLAINTEXT, SSL"),
    ],
)  # fmt: skip
def test_bad_combinations_fail_at_load_time(env: dict[str, str], message: str) -> None:
    """A combination that could not connect (or would connect with less security than meant) is one clear error."""
    with pytest.raises(ConfigError, match=message):
        _settings(env)


def test_settings_print_masks_the_password() -> None:
    """`prefstream settings` never prints the SASL password: it shows `***` (issue #9: it used to drop it)."""
    env = {**os.environ, "PREFSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PREFSTREAM_KAFKA_SASL_USERNAME": "u",
           "PREFSTREAM_KAFKA_SASL_PASSWORD": "pw-must-not-show"}  # fmt: skip
    done = _cli("settings", env=env)
    lines = [line.split()[:2] for line in done.stdout.splitlines()]
    assert done.returncode == 0 and ["PREFSTREAM_KAFKA_SASL_USERNAME", "u"] in lines
    assert ["PREFSTREAM_KAFKA_SASL_PASSWORD", "***"] in lines
    assert "pw-must-not-show" not in done.stdout + done.stderr


# --- a broker that requires SASL_SSL ------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prefstream.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[local.LocalCluster, local.LocalSecurity]]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("starts its own secure broker")
    creds = local.LocalSecurity(username=USER)
    with local.running(tmp_path_factory.mktemp("kafka-secure"), security=creds) as cluster:
        yield cluster, creds


@pytest.fixture
def secure_env(secure_kafka: tuple[local.LocalCluster, local.LocalSecurity], test_env: dict[str, str]) -> dict[str, str]:
    """A prefstream environment for the secure broker, with this test's own topics and app id."""
    cluster, creds = secure_kafka
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PREFSTREAM_"))},
        **test_env,
        "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
        "PREFSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PREFSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "PREFSTREAM_KAFKA_SASL_USERNAME": creds.username,
        "PREFSTREAM_KAFKA_SASL_PASSWORD": creds.password,
        "PREFSTREAM_KAFKA_SSL_CAFILE": str(cluster.ca_file),
    }


def grant(cluster: local.LocalCluster, rules: list[security.AclRule], user: str = USER) -> None:
    """Grant `rules` to `user` as the cluster's super user (its PLAINTEXT internal listener)."""
    from kafka import KafkaAdminClient
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    acls = [
        ACL(f"User:{user}", "*", ACLOperation[op], ACLPermissionType.ALLOW,
            ResourcePattern(ResourceType[r.resource], r.name, ACLResourcePatternType[r.pattern]))
        for r in rules for op in r.operations
    ]  # fmt: skip
    admin = KafkaAdminClient(bootstrap_servers=cluster.admin_bootstrap_servers)
    try:
        result = admin.create_acls(acls)
        assert not result["failed"], result["failed"]
    finally:
        admin.close()



@pytest.mark.kafka
def test_topics_ensure_over_sasl_ssl(secure_kafka: tuple[local.LocalCluster, local.LocalSecurity],
                                     secure_env: dict[str, str]) -> None:  # fmt: skip
    """`prefstream topics ensure` creates every topic over SASL_SSL with only the worker's documented ACLs."""
    cluster, creds = secure_kafka
    settings = _settings(secure_env)
    grant(cluster, security.worker_acls(settings))
    first = _cli("topics", "ensure", env=secure_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created") == 5, first.stdout
    again = _cli("topics", "ensure", env={**secure_env, "PREFSTREAM_LOG_LEVEL": "debug"})
    assert again.returncode == 0 and again.stdout.count(": ok") == 5, again.stdout + again.stderr[-2000:]
    for done in (first, again):
        assert creds.password not in done.stdout + done.stderr


@pytest.mark.kafka
async def test_kafka_python_and_aiokafka_round_trip(secure_kafka: tuple[local.LocalCluster, local.LocalSecurity],
                                                    secure_env: dict[str, str]) -> None:  # fmt: skip
    """An app with the client ACLs (Write events, Read profiles) round-trips a record with both client libraries."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaConsumer, KafkaProducer

    cluster, _ = secure_kafka
    settings = _settings(secure_env)
    t, group = settings.topics, f"{settings.worker.app_id}-reader"
    grant(cluster, security.worker_acls(settings))
    from prefstream.topics import ensure_topics

    ensure_topics(settings)
    # The app is a separate principal in a deployment; here one user holds both sets of ACLs.
    grant(cluster, security.client_acls(settings, group))
    kwargs = security.kafka_python_kwargs(settings.kafka)

    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", **kwargs)  # idempotent
    producer.send(t.events, key=b"u-1", value=b"kafka-python").get(timeout=30)
    producer.send(t.profiles, key=b"u-1", value=b"profile").get(timeout=30)  # the worker's write, for reading
    producer.close()
    consumer = KafkaConsumer(t.profiles, bootstrap_servers=cluster.bootstrap_servers, group_id=group,
                             auto_offset_reset="earliest", consumer_timeout_ms=10000, **kwargs)  # fmt: skip
    try:
        assert [m.value for m in consumer][:1] == [b"profile"]
        consumer.commit()
    finally:
        consumer.close()

    aio = security.aiokafka_kwargs(settings.kafka)
    aproducer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", **aio)
    await aproducer.start()
    try:
        await aproducer.send_and_wait(t.profiles, key=b"u-2", value=b"aiokafka")
    finally:
        await aproducer.stop()
    aconsumer = AIOKafkaConsumer(t.profiles, bootstrap_servers=cluster.bootstrap_servers, group_id=group,
                                 auto_offset_reset="earliest", **aio)  # fmt: skip
    await aconsumer.start()
    try:
        batch = await aconsumer.getmany(timeout_ms=10000)  # continues after kafka-python's committed offset
        assert [r.value for records in batch.values() for r in records] == [b"aiokafka"]
    finally:
        await aconsumer.stop()


@pytest.mark.kafka
def test_refused_clients_get_one_line(secure_kafka: tuple[local.LocalCluster, local.LocalSecurity],
                                      secure_env: dict[str, str]) -> None:  # fmt: skip
    """A wrong password, a PLAINTEXT client and a missing ACL each end the CLI with one clear line, no traceback."""
    cluster, creds = secure_kafka
    # The refusal, not the connect timeout, is under test: on a loaded machine a TLS + SCRAM exchange can
    # take longer than the 5 s default.
    wrong = {**secure_env, "PREFSTREAM_KAFKA_SASL_PASSWORD": "not-the-password", "PREFSTREAM_KAFKA_CONNECT_TIMEOUT_S": "30"}
    plain = {k: v for k, v in secure_env.items() if not k.startswith(("PREFSTREAM_KAFKA_SASL_", "PREFSTREAM_KAFKA_SSL_"))}
    plain["PREFSTREAM_KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
    cmd = [sys.executable, "-m", "prefstream.cli", "topics", "ensure"]
    # Both wait out kafka-python's bootstrap timeout (30 s): run them side by side.
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for env in (wrong, plain)]  # fmt: skip
    unauthorized = _cli("topics", "ensure", env=secure_env)  # no ACL granted for this test's topics
    outs = [p.communicate(timeout=120) for p in procs]
    results = [(p.returncode, out, err) for p, (out, err) in zip(procs, outs, strict=True)]
    results.append((unauthorized.returncode, unauthorized.stdout, unauthorized.stderr))
    expected = ["authentication failed", "no broker answered", "not authorized"]
    for (code, out, err), phrase in zip(results, expected, strict=True):
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and out == "", (code, out, err)
        assert len(lines) == 1 and lines[0].startswith("prefstream topics ensure: Kafka at ") and phrase in lines[0], err
        assert "Traceback" not in err and creds.password not in out + err


@pytest.mark.kafka
def test_admin_client_error_is_a_prefstream_error(secure_kafka: tuple[local.LocalCluster, local.LocalSecurity],
                                                  secure_env: dict[str, str]) -> None:  # fmt: skip
    """The Python API raises KafkaConnectError (a PrefstreamError), not a kafka-python exception."""
    from prefstream.topics import ensure_topics

    with pytest.raises(KafkaConnectError, match="not authorized"):
        ensure_topics(_settings(secure_env))


@pytest.mark.kafka
@pytest.mark.slow
def test_worker_runs_over_sasl_ssl(secure_kafka: tuple[local.LocalCluster, local.LocalSecurity],
                                   secure_env: dict[str, str], tmp_path: Path) -> None:  # fmt: skip
    """A faust worker (ledger backend) with only the documented worker ACLs folds events into a profile over SASL_SSL."""
    import json
    import time
    import urllib.request

    from kafka import KafkaConsumer, KafkaProducer

    from tests.streams.harness import CI_WORKER_ENV, ROOT, event

    cluster, creds = secure_kafka
    settings = _settings(secure_env)
    grant(cluster, security.worker_acls(settings))
    grant(cluster, security.client_acls(settings, f"{settings.worker.app_id}-reader"))
    port = local.free_port()
    env = {**secure_env, **CI_WORKER_ENV, "PREFSTREAM_WEB_PORT": str(port), "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "prefstream.cli", "worker"], env=env, cwd=ROOT,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("worker not ready:\n" + log_path.read_text()[-3000:])
        kwargs = security.kafka_python_kwargs(settings.kafka)
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", **kwargs)
        for i in range(3):
            producer.send(settings.topics.events, key=b"u-sec", value=json.dumps(event("u-sec", f"e{i}")).encode())
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(settings.topics.profiles, bootstrap_servers=cluster.bootstrap_servers,
                                 group_id=f"{settings.worker.app_id}-reader", auto_offset_reset="earliest",
                                 consumer_timeout_ms=1000, **kwargs)  # fmt: skip
        applied = 0
        try:
            while applied < 3 and time.monotonic() < deadline + 60:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                for message in consumer:
                    applied = max(applied, json.loads(message.value)["events_applied"])
        finally:
            consumer.close()
        assert applied == 3, log_path.read_text()[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert creds.password not in log_path.read_text()
