"""Run inside the client-only venv by tests/foundation/test_wheel.py: events of every kind in, profiles out.

Plain Python (the venv has no pytest). Prints one JSON line with what the reader saw; exits non-zero on timeout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from prefstream.client import AsyncProducer, Item, Producer, ProfileReader, events

TIMEOUT_S = 150.0


def every_kind(user: str) -> list[events.Event]:  # type: ignore[name-defined]
    return [
        events.pair(user, f"{user}-pair", chosen="Build a small project.", rejected="Read the manual first.",
                    query="How to learn a language?"),
        events.impression(user, f"{user}-imp", shown=["Title: A", Item(text="Title: B", item_id="b")], clicked=[1]),
        events.engagement(user, f"{user}-eng", item=Item(text="Title: Dune", item_id="b-7"),
                          negatives=["Title: Cooking for One"], domain="books"),
        events.rating(user, f"{user}-rat", item="Title: Pulp Fiction (1994)", score=4.5, scale=5, domain="movies"),
        events.text(user, f"{user}-txt", text="Brews a clean cup.", context="Review the coffee maker."),
        events.conversation(user, f"{user}-conv", turns=[("user", "A trip? Not beaches."), ("assistant", "Hiking?")]),
    ]  # fmt: skip


async def send_async(batch: list[events.Event]) -> None:  # type: ignore[name-defined]
    async with AsyncProducer.from_env() as producer:
        for event in batch:
            await producer.send(event)


def main() -> int:
    sync_user, async_user, forgotten = "c-sync", "c-async", "c-forget"
    with Producer.from_env() as producer:
        for event in every_kind(sync_user) + every_kind(forgotten):
            producer.send(event)
    asyncio.run(send_async(every_kind(async_user)))
    wanted = {user: {e.event_id for e in every_kind(user)} for user in (sync_user, async_user, forgotten)}
    seen_forgotten = False
    forget_sent = False
    deadline = time.monotonic() + TIMEOUT_S
    with ProfileReader.from_env() as reader:
        while time.monotonic() < deadline:
            for change in reader.poll(0.5):
                seen_forgotten |= change.user_id == forgotten and change.forgotten
            profile = reader.get(forgotten)
            if not forget_sent and profile is not None and all(i in profile.summary for i in wanted[forgotten]):
                with Producer.from_env() as producer:
                    producer.send(events.forget(forgotten, f"{forgotten}-forget"))
                forget_sent = True
            done = all((p := reader.get(u)) is not None and all(i in p.summary for i in wanted[u])
                       for u in (sync_user, async_user))  # fmt: skip
            if done and seen_forgotten:
                break
        result = {u: (p.summary if (p := reader.get(u)) else None) for u in (sync_user, async_user, forgotten)}
    print(json.dumps({"profiles": result, "forgotten_seen": seen_forgotten, "forget_sent": forget_sent}))
    return 0 if done and seen_forgotten else 1


if __name__ == "__main__":
    sys.exit(main())
