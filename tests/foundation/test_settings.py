"""Settings are read once from PREFSTREAM_* variables, typed, documented and strict."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefstream.errors import ConfigError
from prefstream.settings import Settings, markdown_table


def test_defaults_match_the_contract() -> None:
    """With an empty environment every contract name has its documented default."""
    s = Settings.from_env({})
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert (s.topics.events, s.topics.profiles) == ("prefstream.events", "prefstream.profiles")
    assert (s.topics.dlq, s.topics.failures) == ("prefstream.dlq", "prefstream.failures")
    assert s.topics.updates == "prefstream.updates"
    assert (s.audit.history_versions, s.audit.updates_include_summary, s.audit.inspector_enabled) == (10, False, False)
    assert s.worker.app_id == "prefstream"
    assert s.worker.web_bind == "127.0.0.1"
    assert s.model.backend is None


def test_environment_overrides_are_typed() -> None:
    """Values are parsed to the declared type."""
    s = Settings.from_env(
        {"PREFSTREAM_PARTITIONS": "12", "PREFSTREAM_DATA_DIR": "/var/x", "PREFSTREAM_SESSION_TIMEOUT_S": "7.5"}
    )
    assert s.topics.partitions == 12
    assert s.worker.data_dir == Path("/var/x")
    assert s.worker.session_timeout_s == 7.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PREFSTREAM_PARTITIONS": "many"}, "PREFSTREAM_PARTITIONS='many': expected int"),
        ({"PREFSTREAM_PARTITIONS": "0"}, "PREFSTREAM_PARTITIONS must be >= 1"),
        ({"PREFSTREAM_MODEL_BACKEND": "gpt"}, "PREFSTREAM_MODEL_BACKEND='gpt': expected one of"),
        ({"PREFSTREAM_LOG_FORMAT": "xml"}, "expected one of json, console"),
        ({"PREFSTREAM_HISTORY_VERSIONS": "0"}, "PREFSTREAM_HISTORY_VERSIONS must be >= 1, got 0"),
        ({"PREFSTREAM_INSPECTOR_ENABLED": "true"}, "PREFSTREAM_INSPECTOR_ENABLED=true needs PREFSTREAM_INSPECTOR_TOKEN"),
        ({"PREFSTREAM_INSPECTOR_ENABLED": "1", "PREFSTREAM_INSPECTOR_TOKEN": "short"}, "of at least 16 characters"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    """A malformed value fails start-up with the variable's name and what was expected."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_worker_backend_is_required() -> None:
    """There is no silent default model backend."""
    with pytest.raises(ConfigError, match="PREFSTREAM_MODEL_BACKEND is required"):
        Settings.from_env({}).model.require_backend()
    assert Settings.from_env({"PREFSTREAM_MODEL_BACKEND": "ledger"}).model.require_backend() == "ledger"


def test_unprefixed_variables_are_ignored() -> None:
    """Names Kubernetes injects (WEB_PORT, BROKER_URL) never change prefstream's settings."""
    s = Settings.from_env({"WEB_PORT": "1", "BROKER_URL": "kafka://elsewhere:1", "APP_ID": "x"})
    assert s == Settings.from_env({})


def test_readme_table_lists_every_setting() -> None:
    """The README's configuration table is generated from the declarations and is in the README."""
    table = markdown_table()
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for line in table.splitlines()[2:]:
        assert line in readme, f"README is missing the row: {line}"


def test_readme_event_tables_match_the_contract_docs() -> None:
    """The README's per-kind field tables are the generated ones from docs/schemas.md."""
    import re

    root = Path(__file__).parents[2]
    doc = (root / "docs/schemas.md").read_text()
    block = re.search(r"<!-- BEGIN GENERATED: event-fields -->\n(.*?)\n<!-- END GENERATED: event-fields -->", doc, re.S)
    assert block is not None
    readme = (root / "README.md").read_text()
    assert block.group(1).replace("#### ", "### ") in readme, "run: bash scripts/update-readme"


def test_inspector_token_is_never_shown() -> None:
    """The inspector token is a secret: the settings' repr and the README table never show its value."""
    token = "t0ken-" + "x" * 20
    s = Settings.from_env({"PREFSTREAM_INSPECTOR_ENABLED": "true", "PREFSTREAM_INSPECTOR_TOKEN": token})
    assert s.audit.inspector_token == token
    assert token not in repr(s) and token not in markdown_table()
