"""The faust app takes its configuration from prefstream's settings alone."""

from __future__ import annotations

import asyncio

import pytest

from prefstream.models.backends.ledger import LedgerBackend
from prefstream.settings import Settings
from prefstream.streams.app import StreamApp


def test_unprefixed_environment_cannot_reconfigure_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    """WEB_PORT, BROKER_URL, WEB_BIND and APP_ENV_PREFIX in the environment (as Kubernetes injects for services
    of those names) change nothing: faust sees only the values from PREFSTREAM_* settings."""
    for name, value in {
        "WEB_PORT": "1111", "BROKER_URL": "kafka://elsewhere:1", "WEB_BIND": "0.0.0.0", "APP_ENV_PREFIX": "X_",
        "X_WEB_PORT": "2222", "STORE": "memory://", "WEB_TABLES_ENABLED": "true",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19999", "PREFSTREAM_WEB_PORT": "7777", "PREFSTREAM_MODEL_BACKEND": "ledger"}
    )
    loop = asyncio.new_event_loop()
    try:
        app = StreamApp(settings, LedgerBackend.from_settings(settings), loop=loop).app
        conf = app.conf
        assert conf.web_port == 7777
        assert conf.web_bind == "127.0.0.1"
        assert [str(u) for u in conf.broker] == ["kafka://127.0.0.1:19999"]
        assert str(conf.store) == "rocksdb:"
        assert conf.web_tables_enabled is False
    finally:
        loop.close()
