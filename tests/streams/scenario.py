"""A reproducible event scenario and the profiles it must produce.

The scenario tracks, per user, the ids of the distinct valid events since that user's last forget, in
production order: with the `ledger` backend that list is exactly what the final summary must hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prefstream.models.backends.ledger import parse_ledger
from prefstream.schemas.profiles import Profile
from tests.streams.harness import Producer, event, forget

MALFORMED: list[bytes] = [
    b"{not json",
    json.dumps({"event_id": "m1", "user_id": "u-bad", "ts": 1, "kind": "teleport"}).encode(),
    json.dumps({"event_id": "m2", "user_id": "u-bad", "kind": "pair", "chosen": "a", "rejected": "b"}).encode(),
    json.dumps({"event_id": "m3", "user_id": "has space", "ts": 1, "kind": "text", "text": "x"}).encode(),
    json.dumps({"event_id": "m4", "user_id": "u-bad", "ts": 1, "kind": "rating", "item": "x", "score": 9, "scale": 5}).encode(),
]


@dataclass
class Scenario:
    producer: Producer
    expected: dict[str, list[str]] = field(default_factory=dict)
    ts_of: dict[str, int] = field(default_factory=dict)  # event id -> ts (ms), when events' times differ
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # every valid event, for resends
    duplicates_sent: int = 0
    malformed_sent: list[bytes] = field(default_factory=list)
    counter: int = 0

    def send(self, user: str, *, wrong_partition: bool = False, wrong_key: bool = False, n: int = 1) -> list[str]:
        """Send `n` new valid events for `user` (optionally via a foreign partitioner or a wrong key)."""
        ids = []
        for _ in range(n):
            self.counter += 1
            ev = event(user, f"{user}-e{self.counter}")
            if wrong_partition:
                self.producer.send_wrong_partition(ev)
            elif wrong_key:
                # A stable key that is not the user id (an account id, say): a consistent, wrong partition.
                self.producer.send(ev, key=f"acct-{user}".encode())
            else:
                self.producer.send(ev)
            self.expected.setdefault(user, []).append(ev["event_id"])
            self.sent.setdefault(user, []).append(ev)
            ids.append(ev["event_id"])
        return ids

    def resend(self, user: str, index: int) -> None:
        """Send an earlier event again (a producer retry or a replay): it must be dropped."""
        self.producer.send(self.sent[user][index])
        self.duplicates_sent += 1

    def forget(self, user: str) -> None:
        self.counter += 1
        self.producer.send(forget(user, f"{user}-forget{self.counter}"))
        self.expected[user] = []

    def malformed(self) -> None:
        for raw in MALFORMED:
            self.producer.send(raw, key=b"u-bad", partition=0)
            self.malformed_sent.append(raw)

    def mismatches(self, profiles: dict[str, list[Profile | None]]) -> dict[str, tuple[list[str], list[str]]]:
        """Users whose last profile does not list exactly the expected ids: {user: (expected, got)}.

        Without `ts_of` the ids must be in the order sent (all events of a scenario share one `ts`, so
        event-time order is arrival order). With `ts_of` (event id -> ts in ms) each id must be there once and
        every update must list its own events by (ts, order sent): docs/streams.md, "Event-time order"."""
        out = {}
        for user, want in self.expected.items():
            history = profiles.get(user) or [None]
            last = history[-1]
            got = parse_ledger(last.summary) if last is not None else []
            events_applied = last.events_applied if last is not None else 0
            if events_applied != len(want) or (got != want if not self.ts_of else not self._in_time_order(want, history)):
                out[user] = (want, got)
        return out

    def _in_time_order(self, want: list[str], history: list[Profile | None]) -> bool:
        last_forget = max((i for i, p in enumerate(history) if p is None), default=-1)
        epoch = [p for p in history[last_forget + 1 :] if p is not None]
        got = parse_ledger(epoch[-1].summary) if epoch else []
        if sorted(got) != sorted(want):
            return False
        rank = {eid: (self.ts_of[eid], i) for i, eid in enumerate(want)}
        before = 0
        for p in epoch:
            ids = parse_ledger(p.summary)
            batch = [rank[i] for i in ids[before:]]
            if batch != sorted(batch):
                return False
            before = len(ids)
        return True


def _content(p: Profile) -> tuple[object, ...]:
    return (p.summary, p.events_applied, p.last_event_id, p.update_events)


def versions_never_go_back(profiles: dict[str, list[Profile | None]]) -> dict[str, list[tuple[int, int] | None]]:
    """Users whose published (epoch, version) sequence ever decreases, or repeats with a different profile:
    {user: sequence}. A repeat of the same profile is allowed: after a crash or a move the new owner publishes
    the current profile again, since the old owner's send may not have reached the broker; a result applied
    again after a crash repeats the version with the same summary and events (only `updated_at` differs)."""
    bad = {}
    for user, history in profiles.items():
        keys = [None if p is None else p.order_key for p in history]
        real = [p for p in history if p is not None]
        if any(b.order_key < a.order_key or (b.order_key == a.order_key and _content(b) != _content(a))
               for a, b in zip(real, real[1:], strict=False)):  # fmt: skip
            bad[user] = keys
    return bad
