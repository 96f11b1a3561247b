"""The committed JSON Schema files and docs/schemas.md match what the Structs generate; their examples are valid."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from prefstream.settings import LimitSettings
from prefstream.schemas import generate
from prefstream.schemas.decode import decode_event
from prefstream.schemas.errors import REJECT_CODE_DOCS
from prefstream.schemas.examples import EXAMPLES
from prefstream.schemas.profiles import decode_profile

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("path", sorted(generate.expected_files()), ids=lambda p: p.name)
def test_committed_file_matches_the_code(path: Path) -> None:
    """A generated file that differs from the code fails here: run `python -m prefstream.schemas.generate` and commit."""
    expected = generate.expected_files()[path]
    assert path.exists(), f"{path} is missing: run python -m prefstream.schemas.generate"
    assert path.read_text(encoding="utf-8") == expected, f"{path} is out of date: run python -m prefstream.schemas.generate"


def test_check_mode_reports_no_drift() -> None:
    """`python -m prefstream.schemas.generate --check` exits 0 on the committed tree."""
    assert generate.main(["--check"]) == 0


@pytest.mark.parametrize("name", ["event", "profile", "failure", "update"])
def test_generated_schemas_are_valid_json_schema(name: str) -> None:
    """Each published file is a valid JSON Schema 2020-12 document."""
    schema = json.loads((ROOT / "schemas" / "json" / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_default_limits_are_baked_into_the_event_schema() -> None:
    """Every limit marker in the event schema carries the default value of the setting it names."""
    text = (ROOT / "schemas" / "json" / "event.schema.json").read_text()
    defaults = LimitSettings()
    assert f'"x-prefstream-max-bytes": {defaults.max_event_bytes}' in text
    markers = re.findall(r'"x-prefstream-limit": "(\w+)",\s*"type": "\w+",(?:\s*"\w+": [^,\n]+,)*?\s*"(maxLength|maxItems)": (\d+)', text)
    assert markers, "no limit markers found"
    env_to_default = {"PREFSTREAM_MAX_TEXT_CHARS": defaults.max_text_chars, "PREFSTREAM_MAX_ITEMS": defaults.max_items, "PREFSTREAM_MAX_TURNS": defaults.max_turns}
    for env, _, value in markers:
        assert int(value) == env_to_default[env], env


def _json_blocks(markdown: str) -> list[str]:
    return re.findall(r"```json\n(.*?)\n```", markdown, re.DOTALL)


def test_doc_examples_are_the_tested_examples_and_valid() -> None:
    """Every event example in docs/schemas.md is one of schemas.examples, validates and decodes."""
    docs = (ROOT / "docs" / "schemas.md").read_text(encoding="utf-8")
    validator = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "json" / "event.schema.json").read_text()))
    event_blocks = [b for b in _json_blocks(docs) if '"kind"' in b]
    assert sorted(event_blocks) == sorted(EXAMPLES.values())
    for block in event_blocks:
        validator.validate(json.loads(block))
        decode_event(None, block.encode(), LimitSettings())


def test_doc_profile_example_is_valid() -> None:
    """The profile example in docs/schemas.md validates against profile.schema.json and decodes."""
    docs = (ROOT / "docs" / "schemas.md").read_text(encoding="utf-8")
    (block,) = [b for b in _json_blocks(docs) if '"updated_at"' in b]
    schema = json.loads((ROOT / "schemas" / "json" / "profile.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(block))
    assert decode_profile(block.encode()).version == 3


def test_doc_update_example_is_valid() -> None:
    """The update record example in docs/schemas.md validates against update.schema.json and decodes."""
    from prefstream.schemas.updates import decode_update

    docs = (ROOT / "docs" / "schemas.md").read_text(encoding="utf-8")
    (block,) = [b for b in _json_blocks(docs) if '"applied_at"' in b]
    schema = json.loads((ROOT / "schemas" / "json" / "update.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(block))
    record = decode_update(block.encode())
    assert record.version == 3 and len(record.event_ids) == 4 and record.summary == ""
    from prefstream.models.prompt import PROMPT_VERSION

    assert record.prompt_version == PROMPT_VERSION  # the docs name the version records carry (issue #9)


def test_docs_list_every_code() -> None:
    """docs/schemas.md documents every rejection code."""
    docs = (ROOT / "docs" / "schemas.md").read_text(encoding="utf-8")
    for code in REJECT_CODE_DOCS:
        assert f"| `{code.value}` |" in docs


def test_doc_failure_example_and_reasons_are_what_the_worker_writes() -> None:
    """docs/schemas.md's failure example decodes, names the prompt version backends record, and every reason
    a failure record can carry (the models' codes and `parked`) is in its table, and no other (issue #9)."""
    from prefstream.models.errors import FailureReason
    from prefstream.models.prompt import PROMPT_VERSION
    from prefstream.schemas.failures import PARKED, decode_failure

    docs = (ROOT / "docs" / "schemas.md").read_text(encoding="utf-8")
    (block,) = [b for b in _json_blocks(docs) if '"reason"' in b]
    schema = json.loads((ROOT / "schemas" / "json" / "failure.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(block))
    record = decode_failure(block.encode())
    assert record.prompt_version == PROMPT_VERSION and record.reason in set(FailureReason)
    table = docs.split("<!-- BEGIN GENERATED: failure-reasons -->")[1].split("<!-- END GENERATED")[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    assert documented == {r.value for r in FailureReason} | {PARKED}
    (profile,) = [b for b in _json_blocks(docs) if '"updated_at"' in b]
    assert decode_profile(profile.encode()).prompt_version == PROMPT_VERSION


def test_readme_profile_example_is_the_generated_one() -> None:
    """The README's profile example is docs/schemas.md's generated one (`bash scripts/update-readme`)."""
    docs = (ROOT / "docs" / "schemas.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (profile,) = [b for b in _json_blocks(docs) if '"updated_at"' in b]
    assert f"```json\n{profile}\n```" in readme.split("<!-- profile-example:start -->")[1].split("<!-- profile-example:end")[0]
