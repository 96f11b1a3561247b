"""The audit trail and the kept history, through `streams.apply.Apply` with in-process test doubles for the
topics and the scheduler: one update record per applied update, the same bytes again on a replay (also after a
crash between the profile write and the user write), the summary only when asked for, and N versions kept."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from prefstream.models.backends.ledger import LedgerBackend
from prefstream.models.interface import UpdateSuccess, Usage
from prefstream.schemas.evidence import Evidence, Triple
from prefstream.schemas.updates import decode_update
from prefstream.streams import state as st
from prefstream.streams.apply import Apply
from prefstream.streams.metrics import StreamMetrics
from prefstream.streams.records import FoldResult, encode
from prefstream.streams.store import Store, user_key
from prefstream.streams.policy import UserView

USER = "u-audit"
PLAN = st.RetryPlan(retry_limit=2, degraded_attempts=2, backoff_s=1.0, backoff_max_s=8.0)


@dataclass
class RecordingTopic:
    """Test double of a faust topic: keeps what was sent."""

    sent: list[tuple[bytes, bytes | None, int]] = field(default_factory=list)

    async def send(self, *, key: bytes, value: bytes | None, partition: int) -> None:
        self.sent.append((key, value, partition))

    @property
    def values(self) -> list[bytes | None]:
        return [v for _, v, _ in self.sent]


@dataclass
class RecordingScheduler:
    """Test double of the fold scheduler: the agent's reports are accepted and ignored."""

    def observe(self, user_id: str, view: UserView | None) -> None:
        del user_id, view

    def complete(self, user_id: str, request_id: str) -> None:
        del user_id, request_id

    def result_seen(self, partition: int, offset: int) -> None:
        del partition, offset


def make_apply(table: dict[bytes, bytes], *, keep: int = 10, include_summary: bool = False) -> Apply:
    return Apply(
        store=Store(table), scheduler=RecordingScheduler(), backend=LedgerBackend(), metrics=StreamMetrics(),  # type: ignore[arg-type]
        plan=PLAN, profiles=RecordingTopic(), failures=RecordingTopic(), updates=RecordingTopic(), partitions=1,
        history_versions=keep, include_summary=include_summary,
    )  # fmt: skip


def pending_event(event_id: str, ts_ms: int) -> st.PendingEvent:
    triple = Triple(query="q", chosen=f"secret choice {event_id}", rejected="r")
    return st.PendingEvent(event_id=event_id, evidence=Evidence(event_id=event_id, triples=(triple,)), ts_ms=ts_ms,
                           produced_ms=ts_ms, accepted_ms=ts_ms + 5, tokens=3)  # fmt: skip


def result(request_id: str, ids: tuple[str, ...], base: int, summary: str) -> bytes:
    outcome = UpdateSuccess(request_id=request_id, summary=summary, model="ledger", prompt_version="ledger-v1",
                            usage=Usage(prompt_tokens=40, completion_tokens=8, latency_s=0.1))  # fmt: skip
    return encode(FoldResult(request_id=request_id, user_id=USER, epoch=1, base_version=base, event_ids=ids, attempt=1,
                             degraded=False, outcome=outcome, backend="ledger", requested_ms=1_000_000,
                             finished_ms=1_000_400))  # fmt: skip


def seed(table: dict[bytes, bytes], *ids: str) -> None:
    Store(table).put_user(USER, st.Meta(), st.Pending(epoch=1, events=tuple(pending_event(i, 1000 + n)
                                                                          for n, i in enumerate(ids))))  # fmt: skip


async def test_one_record_per_update_and_the_same_bytes_on_replay() -> None:
    """Each applied update publishes its profile and then one update record (events, tokens, timings, no text);
    a replayed result publishes exactly the same record again, and a stale result of another request none."""
    table: dict[bytes, bytes] = {}
    seed(table, "a", "b", "c")
    apply = make_apply(table)
    await apply.on_command(result("r1", ("a", "b"), 0, "a\nb"), 0, 0, replay=False)
    (first,) = apply.updates.values
    record = decode_update(first)  # type: ignore[arg-type]
    assert (record.user_id, record.epoch, record.version, record.event_ids) == (USER, 1, 1, ["a", "b"])
    assert (record.prompt_tokens, record.completion_tokens, record.triples, record.summary, record.summary_chars) == (
        40, 8, 2, "", 3)  # fmt: skip
    assert record.queued_at < record.requested_at < record.finished_at <= record.applied_at
    assert b"secret" not in first  # type: ignore[operator]

    await apply.on_command(result("r1", ("a", "b"), 0, "a\nb"), 0, 0, replay=True)  # the same offset, replayed
    assert apply.updates.values == [first, first]
    assert apply.metrics.update_records.labels("republish")._value.get() == 1
    await apply.on_command(result("r-other", ("a", "b"), 0, "a\nb"), 0, 1, replay=True)  # lost the CAS, not ours
    assert apply.updates.values == [first, first]


async def test_a_result_applied_again_after_a_half_written_apply_repeats_its_record() -> None:
    """A crash after the profile write and before the user write makes the replayed result apply again: the
    profile and update record it publishes are byte for byte the ones published the first time."""
    table: dict[bytes, bytes] = {}
    seed(table, "a", "b")
    apply = make_apply(table)
    await apply.on_command(result("r1", ("a",), 0, "a"), 0, 0, replay=False)
    user_before = table[user_key(USER)]
    await apply.on_command(result("r2", ("b",), 1, "a\nb"), 0, 1, replay=False)
    table[user_key(USER)] = user_before  # the user write of r2 never reached the changelog
    await apply.on_command(result("r2", ("b",), 1, "a\nb"), 0, 1, replay=True)
    assert apply.updates.values[2] == apply.updates.values[1] and apply.profiles.values[2] == apply.profiles.values[1]
    record = Store(table).profile_record(USER)
    assert record is not None and [e.version for e in record.history] == [1, 2]


async def test_history_keeps_n_versions_and_the_summary_is_published_only_when_asked() -> None:
    """The profile record keeps the last N updates (summary and provenance); PREFSTREAM_UPDATES_INCLUDE_SUMMARY
    adds the summary to each update record."""
    table: dict[bytes, bytes] = {}
    seed(table, "a", "b", "c")
    apply = make_apply(table, keep=2, include_summary=True)
    for n, ids in enumerate((("a",), ("b",), ("c",))):
        await apply.on_command(result(f"r{n}", ids, n, "\n".join("abc"[: n + 1])), 0, n, replay=False)
    record = Store(table).profile_record(USER)
    assert record is not None and [(e.version, e.event_ids, e.summary) for e in record.history] == [
        (2, ("b",), "a\nb"), (3, ("c",), "a\nb\nc")]  # fmt: skip
    assert [decode_update(v).summary for v in apply.updates.values] == ["a", "a\nb", "a\nb\nc"]  # type: ignore[arg-type]
    assert msgspec.msgpack.decode(table[b"p/" + USER.encode()])["format"] == 1
