"""Profiles, failure records, update records and dead-letter headers: encoding, decoding and versioning."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from prefstream.schemas.deadletter import DLQ_HEADER_PREFIX, HEADER_NAMES, dead_letter_headers, parse_dead_letter_headers
from prefstream.schemas.errors import RecordDecodeError
from prefstream.schemas.failures import FAILURE_SCHEMA_VERSION, FailureRecord, decode_failure, encode_failure
from prefstream.schemas.profiles import PROFILE_SCHEMA_VERSION, Profile, decode_profile, encode_profile
from prefstream.schemas.timefmt import ms_to_rfc3339, ts_to_ms
from prefstream.schemas.updates import UPDATE_SCHEMA_VERSION, UpdateRecord, decode_update, encode_update


def _profile(**over: object) -> Profile:
    fields: dict[str, object] = dict(
        schema_version=1,
        user_id="u-1",
        epoch=1,
        version=3,
        summary="Likes mountains; dislikes beaches.",
        events_applied=12,
        updated_at="2026-01-31T08:15:00.250Z",
        last_event_ts="2026-01-31T08:14:59.000Z",
        model="VanillaH1/AlignXplore-Plus",
        prompt_version="alignxplore-plus-update-v1",
    )
    fields.update(over)
    return Profile(**fields)  # type: ignore[arg-type]


def test_profile_round_trips_and_carries_schema_version() -> None:
    """A profile encodes to JSON with schema_version and decodes back to an equal value."""
    p = _profile(backend="vllm", update_events=4, update_triples=5)
    raw = encode_profile(p)
    assert msgspec.json.decode(raw)["schema_version"] == 1
    assert decode_profile(raw) == p


def test_profile_reader_ignores_unknown_fields() -> None:
    """A newer writer's extra fields do not break an older reader."""
    doc = msgspec.json.decode(encode_profile(_profile()))
    doc["new_field"] = {"x": 1}
    assert decode_profile(msgspec.json.encode(doc)) == _profile()


def test_profile_order_key_is_epoch_then_version() -> None:
    """Consumers order records by (epoch, version): a new epoch beats any version of the old one."""
    records = [_profile(epoch=1, version=9), _profile(epoch=2, version=1), _profile(epoch=1, version=10)]
    assert max(records, key=lambda p: p.order_key) == _profile(epoch=2, version=1)


def test_bad_profile_raises_record_decode_error() -> None:
    """Bytes that are not a profile raise RecordDecodeError, not a msgspec exception."""
    for raw in [b"", b"{}", b"\xff", msgspec.json.encode({"epoch": 0})]:
        with pytest.raises(RecordDecodeError):
            decode_profile(raw)


def test_failure_record_round_trips_without_user_text() -> None:
    """A failure record round-trips and has no field that could hold user text or model output."""
    rec = FailureRecord(
        schema_version=FAILURE_SCHEMA_VERSION,
        user_id="u-1",
        epoch=1,
        base_version=3,
        reason="no_think_close",
        attempts=2,
        event_count=5,
        failed_at="2026-01-31T08:15:00.250Z",
    )
    assert decode_failure(encode_failure(rec)) == rec
    assert not {"summary", "text", "output", "prompt"} & set(FailureRecord.__struct_fields__)
    with pytest.raises(RecordDecodeError):
        decode_failure(b"[]")


def test_dead_letter_headers_follow_the_documented_set() -> None:
    """Headers are prefstream.error.*, UTF-8, in the documented order, and parse back."""
    now = dt.datetime(2026, 1, 31, 8, 15, 0, 250000, tzinfo=dt.UTC)
    headers = dead_letter_headers("too_long", "expected at most 8000 characters", "prefstream.events", 3, 42, now, path="$.text")
    assert [name for name, _ in headers] == [DLQ_HEADER_PREFIX + n for n in HEADER_NAMES]
    parsed = parse_dead_letter_headers(headers + [("other", b"x")])
    assert parsed == {
        "code": "too_long",
        "path": "$.text",
        "message": "expected at most 8000 characters",
        "topic": "prefstream.events",
        "partition": "3",
        "offset": "42",
        "timestamp": "2026-01-31T08:15:00.250Z",
        "schema_version": "1",
        "id": "prefstream.events/3/42",
    }
    assert dead_letter_headers("x", "m", "t", 0, 0, now.timestamp()) [6] == headers[6]
    with pytest.raises(ValueError):
        dead_letter_headers("x", "m", "t", 0, 0, now.replace(tzinfo=None))


def test_timestamps_convert_both_ways() -> None:
    """RFC 3339 with offsets and epoch ms agree; output is UTC with milliseconds."""
    assert ts_to_ms("1970-01-01T01:00:00+01:00") == 0
    assert ts_to_ms("2026-01-31T08:15:00.2509Z") == ts_to_ms(1769847300250)
    assert ms_to_rfc3339(1769847300250) == "2026-01-31T08:15:00.250Z"
    assert ms_to_rfc3339(ts_to_ms("1969-12-31T23:59:59.999Z")) == "1969-12-31T23:59:59.999Z"


def test_records_without_a_tenant_are_version_1_unchanged_and_with_one_version_2() -> None:
    """A profile without a tenant has no `tenant` key at all (the bytes version 1 wrote); with one it says
    version 2 and carries the tenant; the same holds for failure records."""
    from prefstream.schemas.profiles import record_version, tenant_field

    plain = encode_profile(_profile(schema_version=record_version(None), tenant=tenant_field(None)))
    assert b"tenant" not in plain and msgspec.json.decode(plain)["schema_version"] == 1
    tenanted = _profile(schema_version=record_version("shop"), tenant=tenant_field("shop"))
    doc = msgspec.json.decode(encode_profile(tenanted))
    assert (doc["schema_version"], doc["tenant"]) == (PROFILE_SCHEMA_VERSION, "shop") == (2, "shop")
    assert decode_profile(encode_profile(tenanted)) == tenanted
    rec = FailureRecord(schema_version=2, user_id="u-1", epoch=1, base_version=0, reason="timeout", attempts=1,
                        event_count=1, tenant="shop")  # fmt: skip
    assert msgspec.json.decode(encode_failure(rec))["tenant"] == "shop" and FAILURE_SCHEMA_VERSION == 2
    assert b"tenant" not in encode_failure(msgspec.structs.replace(rec, tenant=msgspec.UNSET))


def _update(**over: object) -> UpdateRecord:
    fields: dict[str, object] = dict(
        schema_version=1, user_id="u-1", epoch=1, version=3, request_id="r1",
        event_ids=["e4", "e5"], events_applied=5, triples=3, first_event_ts="2026-01-31T08:14:58.000Z",
        last_event_ts="2026-01-31T08:14:59.000Z", prompt_tokens=100, completion_tokens=50, summary_chars=40,
        model="m", prompt_version="p", backend="ledger", attempt=1, degraded=False,
        queued_at="2026-01-31T08:15:00.000Z", requested_at="2026-01-31T08:15:01.000Z",
        finished_at="2026-01-31T08:15:02.000Z", applied_at="2026-01-31T08:15:02.050Z",
    )  # fmt: skip
    fields.update(over)
    return UpdateRecord(**fields)  # type: ignore[arg-type]


def test_update_record_round_trips_and_ignores_unknown_fields() -> None:
    """An update record encodes with schema_version, decodes back equal, and a newer writer's extra field is
    ignored; without the operator's opt-in the summary field is empty."""
    u = _update()
    raw = encode_update(u)
    doc = msgspec.json.decode(raw)
    assert doc["schema_version"] == 1 and doc["summary"] == "" and decode_update(raw) == u
    doc["new_field"] = [1]
    assert decode_update(msgspec.json.encode(doc)) == u
    assert u.dedupe_key == ("u-1", 1, 3)
    for bad in [b"", b"{}", b"\xff", msgspec.json.encode({**doc, "epoch": 0})]:
        with pytest.raises(RecordDecodeError):
            decode_update(bad)


def test_update_record_of_a_tenant_is_version_2_and_dedupes_per_tenant() -> None:
    """An update record with a tenant says version 2 and carries it; its dedupe key includes the tenant, so the
    same user id in two tenants never collapses."""
    u = _update(schema_version=UPDATE_SCHEMA_VERSION, tenant="shop")
    doc = msgspec.json.decode(encode_update(u))
    assert (doc["schema_version"], doc["tenant"]) == (2, "shop") and decode_update(encode_update(u)) == u
    assert u.dedupe_key == ("shop/u-1", 1, 3) != _update().dedupe_key
