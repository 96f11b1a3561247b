"""Delete what a test's isolated environment (`test_env`) made on the broker: its topics and its app's internal ones."""

from __future__ import annotations

TOPIC_VARIABLES = ("PREFSTREAM_EVENTS_TOPIC", "PREFSTREAM_PROFILES_TOPIC", "PREFSTREAM_DLQ_TOPIC", "PREFSTREAM_FAILURES_TOPIC",
                   "PREFSTREAM_UPDATES_TOPIC")


def delete_topics_of(env: dict[str, str]) -> None:
    """Delete the environment's public topics and every `{PREFSTREAM_APP_ID}-*` internal topic that exists."""
    from kafka import KafkaAdminClient

    ours = {env[k] for k in TOPIC_VARIABLES if k in env}
    admin = KafkaAdminClient(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        app = env["PREFSTREAM_APP_ID"]
        doomed = [t for t in admin.list_topics() if t in ours or t.startswith(f"{app}-")]
        if doomed:
            admin.delete_topics(doomed, raise_errors=False)
    finally:
        admin.close()
