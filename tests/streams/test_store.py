"""The state table's values: keys, round trips, and values written by earlier releases read back."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from prefstream.schemas.evidence import Evidence
from prefstream.streams import state as st
from prefstream.streams.store import (
    STATE_FORMAT,
    ProfileRecord,
    SourceProgress,
    Store,
    profile_key,
    progress_key,
    user_key,
)

SNAPSHOTS = Path(__file__).parent / "fixtures"


def sample_user() -> tuple[st.Meta, st.Pending]:
    meta = st.remember(st.Meta(epoch=2, version=3), st.seen_key("u1", "e1"), 1_764_000_000_000, 3600, 16)
    event = st.PendingEvent(event_id="e1", evidence=Evidence(event_id="e1"), ts_ms=1, produced_ms=2, accepted_ms=3,
                            tokens=4)  # fmt: skip
    return meta, st.Pending(epoch=2, events=(event,))


def sample_profile() -> st.ProfileState:
    return st.ProfileState(epoch=2, version=3, summary="likes short answers", events_applied=7, updated_ms=5,
                           last_event_ts_ms=1, last_event_id="e0", model="m", prompt_version="p", backend="ledger",
                           update_events=2, update_triples=2, prompt_tokens=10, completion_tokens=20)  # fmt: skip


def sample_entry(version: int, epoch: int = 2) -> st.UpdateEntry:
    return st.UpdateEntry(request_id=f"r{version}", epoch=epoch, version=version, summary=f"summary {version}",
                          event_ids=(f"e{version}",), events_applied=version, triples=1, first_event_ts_ms=1,
                          last_event_ts_ms=1, prompt_tokens=10, completion_tokens=20, model="m", prompt_version="p",
                          backend="ledger", attempt=1, degraded=False, queued_ms=1, requested_ms=2, finished_ms=3,
                          applied_ms=4)  # fmt: skip


def test_store_keys_and_round_trips() -> None:
    """Users, profiles and source progress live under their own key prefixes and read back as written,
    each value carrying the state format."""
    table: dict[bytes, bytes] = {}
    store = Store(table)
    meta, pending = sample_user()
    store.put_user("u1", meta, pending)
    store.put_profile("u1", sample_profile(), (sample_entry(3),))
    store.put_progress("events", 3, SourceProgress(offset=41, dead_lettered=40))
    assert set(table) == {user_key("u1"), profile_key("u1"), progress_key("events", 3)} == {
        b"u/u1", b"p/u1", b"o/events/3"}  # fmt: skip
    assert store.user("u1").meta == meta and store.user("u1").pending == pending
    assert store.profile("u1") == sample_profile()
    assert store.profile_record("u1") == ProfileRecord(profile=sample_profile(), history=(sample_entry(3),))
    assert store.progress("events", 3) == SourceProgress(offset=41, dead_lettered=40)
    assert store.progress("events", 2) is None and store.profile("u2") is None
    assert store.user("u2").meta == st.Meta() and store.user("u2").pending is None
    assert all(msgspec.msgpack.decode(v)["format"] == STATE_FORMAT for v in table.values())
    assert list(store.users()) == [("u1", store.user("u1"))]


def test_forced_profile_delete_writes_a_tombstone_even_without_a_local_value() -> None:
    """A replayed forget deletes the profile key even when the local store has none (so faust tombstones it)."""

    class Recording(dict[bytes, bytes]):
        deleted: list[bytes] = []

        def __delitem__(self, key: bytes) -> None:
            self.deleted.append(key)
            super().__delitem__(key)

    table = Recording()
    Store(table).delete_profile("u1")
    assert table.deleted == []
    Store(table).delete_profile("u1", always=True)
    assert table.deleted == [b"p/u1"] and not table


def test_values_written_by_state_format_1_read_back() -> None:
    """A snapshot of values as release 0.2.0 (state format 1) wrote them still decodes to the same state; a new
    release must keep this test passing (or migrate the snapshot's format explicitly)."""
    snapshot = json.loads((SNAPSHOTS / "state-format-1.json").read_text())
    table = {bytes.fromhex(k): bytes.fromhex(v) for k, v in snapshot.items()}
    store = Store(table)
    meta, pending = sample_user()
    assert store.user("u1").meta == meta and store.user("u1").pending == pending
    assert store.profile("u1") == sample_profile()
    assert store.profile_record("u1") == ProfileRecord(profile=sample_profile(), history=())  # written by 0.2.0: no history
    assert store.progress("results", 0) == SourceProgress(offset=9, dead_lettered=-1)


def test_history_keeps_the_last_versions_of_the_epoch() -> None:
    """The history keeps the newest `keep` updates of the current epoch, oldest first; an update of the same
    version (a result applied again after a crash) replaces its entry; a new epoch starts a fresh history."""
    history: tuple[st.UpdateEntry, ...] = ()
    for v in range(1, 6):
        history = st.push_history(history, sample_entry(v), keep=3)
    assert [e.version for e in history] == [3, 4, 5]
    again = msgspec.structs.replace(sample_entry(5), summary="same update, applied again")
    assert st.push_history(history, again, keep=3) == (*history[:2], again)
    assert st.push_history(history, sample_entry(1, epoch=3), keep=3) == (sample_entry(1, epoch=3),)
