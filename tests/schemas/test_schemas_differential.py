"""Differential test: the published JSON Schema and the msgspec decoder give every corpus entry the same verdict.

The corpus is built from the README examples: each example itself, then every single-field mutation
the types allow (drop, wrong type, empty, at and just past every length and number bound, pattern and
enum violations, unknown kind, unknown extra field), at every location of every kind, including optional
fields the example leaves out. Each mutation class has the one error code the decoder must report.

The "schema side" is what a consumer in another language would run: a byte-size check against
`x-prefstream-max-bytes`, strict UTF-8, a JSON parser that refuses NaN/Infinity, then `jsonschema`.
Checks JSON Schema cannot state (dates that do not exist, `clicked` indices past `shown`, `score` >
`scale`, the key) are kept out of this corpus and tested in test_schemas_decode.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import msgspec.inspect as mi
import pytest

from prefstream.settings import LimitSettings
from prefstream.schemas import bounds
from prefstream.schemas.decode import decode_event
from prefstream.schemas.errors import EventRejected, RejectCode
from prefstream.schemas.events import KINDS
from prefstream.schemas.examples import EXAMPLES

LIMITS = LimitSettings()
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "json" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

#: Fields whose every format violation has a dedicated code.
FIELD_CODES = {"$.user_id": RejectCode.INVALID_USER_ID, "$.event_id": RejectCode.INVALID_EVENT_ID, "$.ts": RejectCode.INVALID_TS,
               "$.tenant": RejectCode.INVALID_TENANT}
#: Locations where a value at its static bound trips a cross-field check (score <= scale, clicked < len(shown)).
CROSS_FIELD = {"$.score", "$.scale", "$.clicked"}
BAD_PATTERN = "Bad value é"


def schema_verdict(raw: bytes) -> bool:
    """What a consumer with only the published schema file concludes about one message value."""
    if len(raw) > SCHEMA["x-prefstream-max-bytes"]:
        return False
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text, parse_constant=_refuse)
    except (UnicodeDecodeError, ValueError):
        return False
    return VALIDATOR.is_valid(doc)


def _refuse(name: str) -> None:
    raise ValueError(name)


@dataclass(frozen=True)
class Case:
    """One corpus entry: a document, the mutation that made it, and the decoder's expected code (None: valid)."""

    name: str
    doc: Any
    code: RejectCode | None
    path: str = "$"


def _unwrap(t: mi.Type) -> tuple[mi.Type, str | None, dict[str, Any]]:
    limit, extra = None, {}
    while isinstance(t, mi.Metadata):
        extra.update(t.extra_json_schema or {})
        limit = limit or (t.extra_json_schema or {}).get(bounds.LIMIT_KEY)
        t = t.type
    return t, limit, extra


def _code(cls: RejectCode, path: str) -> RejectCode:
    if cls in (RejectCode.WRONG_TYPE, RejectCode.MISSING_FIELD):
        return cls
    return FIELD_CODES.get(path, cls)


def _set(doc: Any, tokens: tuple[str | int, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for tok in tokens[:-1]:
        target = target[tok]
    target[tokens[-1]] = value
    return doc


def _drop(doc: Any, tokens: tuple[str | int, ...]) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for tok in tokens[:-1]:
        target = target[tok]
    del target[tokens[-1]]
    return doc


def _path(tokens: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{t}]" if isinstance(t, int) else f".{t}" for t in tokens)


def _wrong_type_value(t: mi.Type) -> Any:
    """A JSON value of a type `t` does not accept."""
    t, _, _ = _unwrap(t)
    members = t.types if isinstance(t, mi.UnionType) else (t,)
    kinds = {type(_unwrap(m)[0]) for m in members}
    if mi.StrType in kinds or mi.LiteralType in kinds:
        return [] if mi.IntType in kinds else 12345
    return "a string"


def _mutations(t: mi.Type, tokens: tuple[str | int, ...], doc: Any, required: bool, present: bool) -> Iterator[Case]:
    """Every single-field mutation of the field at `tokens`, whose declared type is `t`."""
    path = _path(tokens)
    name = path
    if present:
        yield Case(f"{name}: wrong type", _set(doc, tokens, _wrong_type_value(t)), RejectCode.WRONG_TYPE, path)
        if required and isinstance(tokens[-1], str):
            yield Case(f"{name}: dropped", _drop(doc, tokens), RejectCode.MISSING_FIELD, path)
        elif isinstance(tokens[-1], str):
            yield Case(f"{name}: dropped (optional)", _drop(doc, tokens), None)
    base, _, _ = _unwrap(t)
    if isinstance(base, mi.UnionType):
        nullable = any(isinstance(m, mi.NoneType) for m in base.types)
        if nullable and isinstance(tokens[-1], str):
            yield Case(f"{name}: null (optional)", _set(doc, tokens, None), None)
        elif present:
            yield Case(f"{name}: null", _set(doc, tokens, None), RejectCode.WRONG_TYPE, path)
        for member in base.types:
            yield from _bound_mutations(member, tokens, doc)
        return
    if present:
        yield Case(f"{name}: null", _set(doc, tokens, None), RejectCode.WRONG_TYPE, path)
    yield from _bound_mutations(t, tokens, doc)


def _bound_mutations(t: mi.Type, tokens: tuple[str | int, ...], doc: Any) -> Iterator[Case]:
    """Values at and just past each bound of one (non-union) type."""
    path = _path(tokens)
    base, limit, extra = _unwrap(t)
    if isinstance(base, mi.StrType):
        top = getattr(LIMITS, limit) if limit else base.max_length
        if top is not None:
            yield Case(f"{path}: {top} chars", _set(doc, tokens, "é" * top if not base.pattern else "x" * top), None)
            yield Case(f"{path}: {top + 1} chars", _set(doc, tokens, "x" * (top + 1)), _code(RejectCode.TOO_LONG, path), path)
        if base.min_length:
            yield Case(f"{path}: empty", _set(doc, tokens, ""), _code(RejectCode.TOO_SHORT, path), path)
        if base.pattern:
            yield Case(f"{path}: pattern", _set(doc, tokens, BAD_PATTERN), _code(RejectCode.INVALID_VALUE, path), path)
    elif isinstance(base, (mi.IntType, mi.FloatType)):
        step = 1 if isinstance(base, mi.IntType) else 0.5
        if base.ge is not None:
            if path not in CROSS_FIELD:
                yield Case(f"{path}: at minimum", _set(doc, tokens, base.ge), None)
            yield Case(f"{path}: below minimum", _set(doc, tokens, base.ge - step), _code(RejectCode.OUT_OF_RANGE, path), path)
        if base.le is not None:
            if _path(tokens[:1]) not in CROSS_FIELD:
                yield Case(f"{path}: at maximum", _set(doc, tokens, base.le), None)
            yield Case(f"{path}: above maximum", _set(doc, tokens, base.le + step), _code(RejectCode.OUT_OF_RANGE, path), path)
    elif isinstance(base, mi.LiteralType):
        yield Case(f"{path}: not an allowed value", _set(doc, tokens, "not-a-value"), RejectCode.INVALID_VALUE, path)
    elif isinstance(base, mi.ListType):
        current = _get(doc, tokens)
        sample = current[0] if current else _sample(base.item_type)
        top = getattr(LIMITS, limit) if limit else base.max_length
        if sample is not None and top is not None and not extra.get("uniqueItems"):
            yield Case(f"{path}: {top} entries", _set(doc, tokens, [sample] * top), None)
            yield Case(f"{path}: {top + 1} entries", _set(doc, tokens, [sample] * (top + 1)), RejectCode.TOO_MANY, path)
        if base.min_length:
            yield Case(f"{path}: empty", _set(doc, tokens, []), RejectCode.TOO_FEW, path)
    elif isinstance(base, mi.DictType):
        top = base.max_length
        if top is not None:
            yield Case(f"{path}: {top} entries", _set(doc, tokens, {f"k{i}": "v" for i in range(top)}), None)
            yield Case(f"{path}: {top + 1} entries", _set(doc, tokens, {f"k{i}": "v" for i in range(top + 1)}), RejectCode.TOO_MANY, path)
        key, value = _unwrap(base.key_type)[0], _unwrap(base.value_type)[0]
        if isinstance(key, mi.StrType) and key.max_length:
            yield Case(f"{path}: key at max", _set(doc, tokens, {"k" * key.max_length: "v"}), None)
            yield Case(f"{path}: key too long", _set(doc, tokens, {"k" * (key.max_length + 1): "v"}), RejectCode.TOO_LONG, path + "[key]")
            yield Case(f"{path}: empty key", _set(doc, tokens, {"": "v"}), RejectCode.TOO_SHORT, path + "[key]")
        if isinstance(value, mi.StrType) and value.max_length:
            yield Case(f"{path}: value at max", _set(doc, tokens, {"k": "é" * value.max_length}), None)
            yield Case(f"{path}: value too long", _set(doc, tokens, {"k": "x" * (value.max_length + 1)}), RejectCode.TOO_LONG, path + "[...]")
            yield Case(f"{path}: value not a string", _set(doc, tokens, {"k": 1}), RejectCode.WRONG_TYPE, path + "[...]")


def _get(doc: Any, tokens: tuple[str | int, ...]) -> Any:
    for tok in tokens:
        if isinstance(doc, dict) and tok not in doc:
            return None
        doc = doc[tok]
    return doc


def _sample(t: mi.Type) -> Any:
    """A small valid value of a list's item type, for lists the example leaves out."""
    base, _, _ = _unwrap(t)
    members = base.types if isinstance(base, mi.UnionType) else (base,)
    if any(isinstance(_unwrap(m)[0], mi.StrType) for m in members):
        return "x"
    return None


def _walk(t: mi.Type, value: Any, tokens: tuple[str | int, ...], doc: Any) -> Iterator[Case]:
    """Mutations of every location under `tokens`, following the msgspec type description."""
    base, _, _ = _unwrap(t)
    if isinstance(base, mi.UnionType):
        for member in base.types:
            inner, _, _ = _unwrap(member)
            if isinstance(inner, mi.StructType) and isinstance(value, dict):
                yield from _walk(member, value, tokens, doc)
            if isinstance(inner, mi.ListType) and isinstance(value, list):
                yield from _walk(member, value, tokens, doc)
        return
    if isinstance(base, mi.StructType) and isinstance(value, dict):
        for f in base.fields:
            sub = (*tokens, f.encode_name)
            yield from _mutations(f.type, sub, doc, f.required, f.encode_name in value)
            if f.encode_name in value:
                yield from _walk(f.type, value[f.encode_name], sub, doc)
        yield Case(f"{_path(tokens)}: unknown field", _set(doc, (*tokens, "zz_future"), {"a": [1, None]}), None)
    elif isinstance(base, mi.ListType) and isinstance(value, list):
        for i, item in enumerate(value[:2]):  # the first two entries represent the rest
            sub = (*tokens, i)
            yield from _mutations(base.item_type, sub, doc, True, True)
            yield from _walk(base.item_type, item, sub, doc)


def corpus() -> list[Case]:
    """The examples, an unknown kind, and every single-field mutation of every example."""
    cases: list[Case] = []
    for kind, text in EXAMPLES.items():
        doc = json.loads(text)
        if kind == "impression":
            doc["query"] = "Latest headlines"  # exercise optional fields the example leaves out
        cases.append(Case(f"{kind}: example", doc, None))
        cases.append(Case(f"{kind}: unknown kind", doc | {"kind": "purchase"}, RejectCode.UNKNOWN_KIND, "$.kind"))
        cases.append(Case(f"{kind}: no kind", {k: v for k, v in doc.items() if k != "kind"}, RejectCode.MISSING_FIELD, "$.kind"))
        info = mi.type_info(KINDS[kind])
        for case in _walk(info, doc, (), doc):
            if case.name.startswith("$.kind"):
                continue  # the tag: covered above
            cases.append(Case(f"{kind}: {case.name}", case.doc, case.code, case.path))
    # Bounds the generic walk leaves out: distinct clicks (uniqueItems), and clicked at its own maximum.
    imp = json.loads(EXAMPLES["impression"])
    cases.append(Case("impression: duplicate click", imp | {"clicked": [2, 2]}, RejectCode.DUPLICATE_VALUE, "$.clicked[1]"))
    full = imp | {"shown": [f"item {i}" for i in range(LIMITS.max_items)], "clicked": list(range(LIMITS.max_items))}
    cases.append(Case("impression: every shown item clicked, at max", full, None))
    return cases


CORPUS = corpus()


def test_corpus_covers_every_mutation_class() -> None:
    """The corpus is large and exercises every code JSON Schema can express."""
    codes = {c.code for c in CORPUS}
    assert len(CORPUS) > 400
    assert codes >= {
        None,
        RejectCode.UNKNOWN_KIND,
        RejectCode.MISSING_FIELD,
        RejectCode.WRONG_TYPE,
        RejectCode.TOO_LONG,
        RejectCode.TOO_SHORT,
        RejectCode.TOO_MANY,
        RejectCode.TOO_FEW,
        RejectCode.OUT_OF_RANGE,
        RejectCode.INVALID_VALUE,
        RejectCode.INVALID_USER_ID,
        RejectCode.INVALID_EVENT_ID,
        RejectCode.INVALID_TS,
        RejectCode.DUPLICATE_VALUE,
    }


def test_schema_and_decoder_agree_on_every_corpus_entry() -> None:
    """Every corpus entry gets the same verdict from the JSON Schema and the decoder, and the expected code."""
    disagreements = []
    for case in CORPUS:
        raw = json.dumps(case.doc, ensure_ascii=False).encode()
        by_schema = schema_verdict(raw)
        try:
            decode_event(None, raw, LIMITS)
            got: tuple[RejectCode | None, str] = (None, "$")
        except EventRejected as e:
            got = (e.code, e.path)
        by_decoder = got[0] is None
        expected = (case.code, case.path if case.code else "$")
        if by_schema != by_decoder or got != expected:
            disagreements.append(f"{case.name}: schema={by_schema} decoder={got} expected={expected}")
    assert not disagreements, "\n".join(disagreements[:40]) + f"\n({len(disagreements)} in all)"


def test_whole_message_limit_at_and_past_the_bound() -> None:
    """A value of exactly the byte limit passes both sides; one byte more fails both (too_large)."""
    doc = json.loads(EXAMPLES["text"])
    raw = json.dumps(doc).encode()
    filler = LIMITS.max_event_bytes - len(raw)
    # Pad with an unknown field so no text bound is involved.
    padded = json.dumps(doc | {"zz_pad": ""}).encode()
    exact = json.dumps(doc | {"zz_pad": "x" * (LIMITS.max_event_bytes - len(padded))}).encode()
    assert len(exact) == LIMITS.max_event_bytes and filler > 0
    assert schema_verdict(exact) and decode_event(None, exact, LIMITS)
    over = exact[:-1] + b' }'
    assert not schema_verdict(over)
    with pytest.raises(EventRejected) as info:
        decode_event(None, over, LIMITS)
    assert info.value.code == RejectCode.TOO_LARGE
