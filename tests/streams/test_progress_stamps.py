"""Progress without a second write (issue #13): a message whose last write is its user's record needs no
progress record, and the position restored from any prefix of the changelog is exactly the last message
whose writes are all in it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from prefstream.streams import state as st
from prefstream.streams.progress import SourceRecord, SourceTracker
from prefstream.streams.store import SourceProgress, Store, progress_key

TOPICS = {"ev": "events", "rp": "repartition", "rs": "results"}


class Changelog(dict[bytes, bytes]):
    """A table that also records every write in order, as faust's changelog partition does."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[bytes, bytes | None]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.log.append((key, None))
        super().__delitem__(key)


def restore(log: list[tuple[bytes, bytes | None]]) -> dict[bytes, bytes]:
    table: dict[bytes, bytes] = {}
    for key, value in log:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def process(tracker: SourceTracker, store: Store, record: SourceRecord, writes: list[str], final: bool = True) -> None:
    """What the agent does with one message: begin, the handler's writes (the last user record final, when
    it is the last write and `final`), processed."""
    tracker.classify(record)
    tracker.begin(record)
    for i, what in enumerate(writes):
        user = f"p{record.partition}u{i % 3}"  # a user's records live in its own partition
        if what == "user":
            store.put_user(user, st.Meta(version=record.offset), None, final=final and i == len(writes) - 1)
        elif what == "profile":
            store.delete_profile(user, always=True)
        elif what == "rewrite":
            store.rewrite_user(user)
    tracker.processed(record)


def test_an_accepted_event_writes_no_progress_record() -> None:
    """A message whose last write is a user record leaves the progress record alone; one that writes nothing,
    or whose last write is not a user record, writes it."""
    table = Changelog()
    store = Store(table)
    tracker = SourceTracker(store, TOPICS, lambda t, p: None)
    process(tracker, store, SourceRecord("ev", 0, 0, None, None, 0), ["user"])
    assert progress_key("events", 0) not in table and len(table.log) == 1
    process(tracker, store, SourceRecord("ev", 0, 1, None, None, 0), [])  # e.g. forwarded to another partition
    assert store.progress("events", 0) == SourceProgress(offset=1)
    process(tracker, store, SourceRecord("ev", 0, 2, None, None, 0), ["user", "profile"])  # a forget
    assert store.progress("events", 0) == SourceProgress(offset=2)
    tracker.begin(SourceRecord("ev", 0, 3, None, None, 0))
    store.put_user("p0u0", st.Meta(), None, final=True)
    with pytest.raises(RuntimeError, match="after the message's final write"):
        store.put_profile("p0u0", None, ())  # type: ignore[arg-type]
    tracker.processed(SourceRecord("ev", 0, 3, None, None, 0))
    fresh = SourceTracker(Store(restore(table.log)), TOPICS, lambda t, p: None)
    assert fresh.classify(SourceRecord("ev", 0, 3, None, None, 0)) == ("replay", 3)
    assert fresh.classify(SourceRecord("ev", 0, 4, None, None, 0)) == ("next", 4)


message_st = hs.tuples(
    hs.sampled_from(["ev", "rp", "rs"]),
    hs.integers(0, 1),  # partition
    hs.lists(hs.sampled_from(["user", "profile", "rewrite"]), max_size=3),
    hs.booleans(),  # whether the last write, when it is a user record, is declared final
)


@settings(max_examples=200, deadline=None)
@given(messages=hs.lists(message_st, min_size=1, max_size=25), committed=hs.sampled_from([None, 0]))
def test_any_changelog_prefix_restores_exactly_the_messages_it_completes(
    messages: list[tuple[str, int, list[str], bool]], committed: int | None
) -> None:
    """Cut the changelog after any write (a crash): per source partition, the restored position is the last
    offset all of whose writes made it, so an offset is a replay exactly when its effects are in the state."""
    table = Changelog()
    store = Store(table)
    tracker = SourceTracker(store, TOPICS, lambda t, p: committed)
    next_offset: dict[tuple[str, int], int] = {}
    ends: list[tuple[tuple[str, int], int, int]] = []  # (source partition, offset, changelog length after it)
    for topic, partition, writes, final in messages:
        offset = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = offset + 1
        process(tracker, store, SourceRecord(topic, partition, offset, None, None, 0), writes, final)
        ends.append(((topic, partition), offset, len(table.log)))
    for cut in range(len(table.log) + 1):
        fresh = SourceTracker(Store(restore(table.log[:cut])), TOPICS, lambda t, p: committed)
        for tp in next_offset:
            done = [offset for source, offset, end in ends if source == tp and end <= cut]
            expected = max(done, default=None)
            position = fresh._position(*tp).offset
            if expected is None:  # nothing of it in the state: the committed offset is the baseline
                assert position == (None if committed is None else committed - 1), (cut, tp)
            else:
                assert position == expected, (cut, tp, position, expected)
