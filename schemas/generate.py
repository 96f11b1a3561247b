"""Write the published contract files from the Structs: `python -m prefstream.schemas.generate [--check]`.

Outputs, all committed:

- `schemas/json/event.schema.json`, `profile.schema.json`, `failure.schema.json`, `update.schema.json`
  (JSON Schema 2020-12),
  with the DEFAULT `LimitSettings` written next to each `x-prefstream-limit` marker;
- the generated blocks of `docs/schemas.md` (per-kind field tables, examples, error codes).

`--check` writes nothing and exits 1 when a file differs from what the code generates (the drift test
runs the same comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from prefstream.settings import LimitSettings
from prefstream.schemas import bounds
from prefstream.schemas.errors import REJECT_CODE_DOCS, STREAM_CODE_DOCS
from prefstream.schemas.events import EVENT_TYPES, KINDS, Event
from prefstream.models.errors import FAILURE_REASON_DOCS
from prefstream.schemas.examples import EXAMPLES, FAILURE_EXAMPLE, PROFILE_EXAMPLE, UPDATE_EXAMPLE
from prefstream.schemas.failures import PARKED, FailureRecord
from prefstream.schemas.profiles import Profile
from prefstream.schemas.updates import UpdateRecord

ROOT: Final = Path(__file__).resolve().parent.parent
JSON_DIR: Final = ROOT / "schemas" / "json"
DOCS: Final = ROOT / "docs" / "schemas.md"
DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
BASE_ID: Final = "https://prefstream.invalid/schemas/"


def _env_name(limit: str) -> str:
    for f in dataclasses.fields(LimitSettings):
        if f.name == limit:
            return str(f.metadata["env"])
    raise KeyError(limit)


def _bake_limits(node: Any, limits: LimitSettings) -> Any:
    """Write the configured value of each limit marker as the JSON Schema keyword it stands for."""
    if isinstance(node, dict):
        out = {k: _bake_limits(v, limits) for k, v in node.items()}
        limit = out.get(bounds.LIMIT_KEY)
        if limit is not None:
            out[bounds.LIMIT_KEY] = _env_name(limit)
            out[bounds.SCHEMA_KEYWORD[limit]] = getattr(limits, limit)
        return out
    if isinstance(node, list):
        return [_bake_limits(v, limits) for v in node]
    return node


def event_schema(limits: LimitSettings | None = None) -> dict[str, Any]:
    """JSON Schema of an event message, with `limits` (default: the default settings) baked in."""
    limits = limits or LimitSettings()
    body = _bake_limits(msgspec.json.schema(Event), limits)
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "event.schema.json",
        "title": "prefstream event",
        "description": (
            "One message value on PREFSTREAM_EVENTS_TOPIC: a UTF-8 JSON object; the message key is the UTF-8 "
            "bytes of user_id. `kind` selects the variant. Unknown fields are ignored. Bounds marked "
            f"{bounds.LIMIT_KEY} are the defaults of the named setting. Also checked by the worker and not "
            "expressible here: the whole value is at most x-prefstream-max-bytes bytes (default shown), ts "
            "names a real date within 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, clicked indices point "
            "into shown, score <= scale, the key matches user_id, arrays and objects nest at most 64 deep."
        ),
        "x-prefstream-max-bytes": limits.max_event_bytes,
        **body,
    }


def record_schema(tp: type, name: str, description: str) -> dict[str, Any]:
    """JSON Schema of a record prefstream publishes."""
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + f"{name}.schema.json",
        "title": f"prefstream {name}",
        "description": description,
        **msgspec.json.schema(tp),
    }


def schema_files() -> dict[Path, str]:
    """Every generated JSON Schema file and its content."""
    schemas = {
        "event": event_schema(),
        "profile": record_schema(
            Profile,
            "profile",
            "One message value on PREFSTREAM_PROFILES_TOPIC (compacted, key = UTF-8 user_id). Order a user's "
            "records by (epoch, version); a null value (tombstone) means the user was forgotten. "
            "Ignore unknown fields.",
        ),
        "failure": record_schema(
            FailureRecord,
            "failure",
            "One message value on PREFSTREAM_FAILURES_TOPIC (key = UTF-8 user_id): a model update that failed. "
            "No user text. Ignore unknown fields.",
        ),
        "update": record_schema(
            UpdateRecord,
            "update",
            "One message value on PREFSTREAM_UPDATES_TOPIC (key = UTF-8 user_id): an applied model update. A "
            "record can repeat after a worker crash (same content): dedupe on (user_id, epoch, version). No user "
            "text unless PREFSTREAM_UPDATES_INCLUDE_SUMMARY is set. Ignore unknown fields.",
        ),
    }
    return {
        JSON_DIR / f"{name}.schema.json": json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        for name, schema in schemas.items()
    }


# --- docs/schemas.md generated blocks ------------------------------------------------------------------


def _type_name(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata):
        return _type_name(t.type)
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.IntType):
        return "integer"
    if isinstance(t, mi.FloatType):
        return "number"
    if isinstance(t, mi.LiteralType):
        return " \\| ".join(f'`"{v}"`' for v in t.values)
    if isinstance(t, mi.ListType):
        return f"list of {_type_name(t.item_type)}"
    if isinstance(t, mi.DictType):
        return "map of string to string"
    if isinstance(t, mi.StructType):
        return t.cls.__name__
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        names = [_type_name(m) for m in members]
        if names == ["string", "integer"]:
            return "string (RFC 3339) \\| integer (epoch ms)"
        if names == ["Item", "string"]:
            return "item"
        return " \\| ".join(names)
    return type(t).__name__


def _bounds(t: mi.Type, limits: LimitSettings) -> str:
    parts: list[str] = []
    while True:
        if isinstance(t, mi.Metadata):
            limit = (t.extra_json_schema or {}).get(bounds.LIMIT_KEY)
            if limit is not None:
                unit = "chars" if limit == "max_text_chars" else "entries"
                parts.append(f"≤ {getattr(limits, limit)} {unit} (`{_env_name(limit)}`)")
            if (t.extra_json_schema or {}).get("uniqueItems"):
                parts.append("distinct")
            t = t.type
            continue
        if isinstance(t, mi.UnionType):
            members = [m for m in t.types if not isinstance(m, mi.NoneType)]
            if len(members) == 1:
                t = members[0]
                continue
            if _type_name(t) == "item":
                return "text 1 – " + str(limits.max_text_chars) + " chars"
            if _type_name(t).startswith("string (RFC"):
                return "RFC 3339 with offset, or 0 – " + str(bounds.MAX_EPOCH_MS)
        break
    if isinstance(t, (mi.StrType, mi.ListType, mi.DictType)):
        unit = "chars" if isinstance(t, mi.StrType) else "entries"
        if t.min_length is not None:
            parts.append(f"≥ {t.min_length} {unit}")
        if t.max_length is not None:
            parts.append(f"≤ {t.max_length} {unit}")
        if isinstance(t, mi.StrType) and t.pattern is not None:
            parts.append(f"pattern `{t.pattern}`")
        if isinstance(t, mi.ListType) and _type_name(t.item_type) == "item":
            parts.append(f"each text ≤ {limits.max_text_chars} chars")
    if isinstance(t, mi.DictType):
        key, value = t.key_type, t.value_type
        if isinstance(key, mi.StrType) and isinstance(value, mi.StrType):
            parts.append(f"keys {key.min_length or 0} – {key.max_length} chars, values ≤ {value.max_length} chars")
    if isinstance(t, (mi.IntType, mi.FloatType)):
        if t.ge is not None:
            parts.append(f"≥ {t.ge}")
        if t.le is not None:
            parts.append(f"≤ {t.le}")
    return ", ".join(parts)


def _field_rows(cls: type, limits: LimitSettings, skip: set[str]) -> list[str]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    rows = []
    for f in info.fields:
        if f.encode_name in skip:
            continue
        required = "yes" if f.required else "no"
        rows.append(f"| `{f.encode_name}` | {_type_name(f.type)} | {required} | {_bounds(f.type, limits)} |")
    return rows


def fields_block(limits: LimitSettings | None = None) -> str:
    """Markdown: the common fields, then one table per kind, with the default bounds."""
    limits = limits or LimitSettings()
    header = ["| field | type | required | bounds (defaults) |", "| --- | --- | --- | --- |"]
    common = {f for f in EVENT_TYPES[-1].__struct_fields__}
    out = ["#### Common fields (every kind)", "", *header, "| `kind` | string | yes | one of "
           + ", ".join(f"`{k}`" for k in KINDS) + " |"]
    out += _field_rows(EVENT_TYPES[-1], limits, set())
    out += ["", "#### Item", "", *header, *_field_rows(_item_cls(), limits, set())]
    out += ["", "An item may also be written as a plain string: `\"text\"` is `{\"text\": \"text\"}`.", ""]
    out += ["#### Turn", "", *header, *_field_rows(_turn_cls(), limits, set()), ""]
    for kind, cls in KINDS.items():
        rows = _field_rows(cls, limits, common)
        out += [f"#### `{kind}`", "", (cls.__doc__ or "").strip(), ""]
        out += [*header, *rows] if rows else ["No fields beyond the common ones."]
        out += ["", "```json", EXAMPLES[kind], "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _item_cls() -> type:
    from prefstream.schemas.events import Item

    return Item


def _turn_cls() -> type:
    from prefstream.schemas.events import Turn

    return Turn


def codes_block() -> str:
    """Markdown: every rejection code and its meaning."""
    rows = ["| code | meaning |", "| --- | --- |"]
    rows += [f"| `{code.value}` | {doc} |" for code, doc in REJECT_CODE_DOCS.items()]
    return "\n".join(rows) + "\n"


def stream_codes_block() -> str:
    """Markdown: the codes the worker dead-letters valid events with, and their meaning."""
    rows = ["| code | meaning |", "| --- | --- |"]
    rows += [f"| `{code.value}` | {doc} |" for code, doc in STREAM_CODE_DOCS.items()]
    return "\n".join(rows) + "\n"


def record_block(tp: type) -> str:
    """Markdown: the fields of a published record."""
    info = mi.type_info(tp)
    assert isinstance(info, mi.StructType)
    rows = ["| field | type | meaning |", "| --- | --- | --- |"]
    for f in info.fields:
        desc = ""
        t = f.type
        if isinstance(t, mi.Metadata) and t.extra_json_schema:
            desc = str(t.extra_json_schema.get("description", ""))
        rows.append(f"| `{f.encode_name}` | {_type_name(f.type)} | {desc} |")
    return "\n".join(rows) + "\n"


def failure_reasons_block() -> str:
    """Markdown: every `reason` a failure record can carry."""
    rows = ["| reason | meaning |", "| --- | --- |"]
    rows += [f"| `{reason.value}` | {doc} |" for reason, doc in FAILURE_REASON_DOCS.items()]
    rows.append(f"| `{PARKED}` | The user was parked after this failure: updates stop until `prefstream redrive`; "
                "the events stay pending. Written after the failure record that parked it. |")
    return "\n".join(rows) + "\n"


def example_block(record: msgspec.Struct) -> str:
    """Markdown: a record exactly as the worker encodes it."""
    return "```json\n" + msgspec.json.encode(record).decode() + "\n```\n"


BLOCKS: Final = {
    "event-fields": fields_block,
    "reject-codes": codes_block,
    "stream-codes": stream_codes_block,
    "profile-fields": lambda: record_block(Profile),
    "profile-example": lambda: example_block(PROFILE_EXAMPLE),
    "failure-fields": lambda: record_block(FailureRecord),
    "failure-reasons": failure_reasons_block,
    "failure-example": lambda: example_block(FAILURE_EXAMPLE),
    "update-fields": lambda: record_block(UpdateRecord),
    "update-example": lambda: example_block(UPDATE_EXAMPLE),
}
_BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)", re.DOTALL
)


def render_docs(text: str) -> str:
    """`text` with every generated block replaced by its current content."""

    def repl(m: re.Match[str]) -> str:
        make = BLOCKS.get(m.group("name"))
        if make is None:
            raise KeyError(f"unknown generated block {m.group('name')!r} in {DOCS}")
        return m.group(1) + make() + m.group(4)

    return _BLOCK.sub(repl, text)


def expected_files() -> dict[Path, str]:
    """Every generated file and the content the code says it should have."""
    files = schema_files()
    if DOCS.exists():
        files[DOCS] = render_docs(DOCS.read_text(encoding="utf-8"))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prefstream.schemas.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, content in expected_files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
