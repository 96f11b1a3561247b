"""The ledger test backend."""

from __future__ import annotations

import asyncio

from models.backends.ledger import LedgerBackend, parse_ledger
from models.interface import UpdateFailure, UpdateRequest, UpdateSuccess
from schemas.evidence import Evidence


def request(user: str, ids: list[str], previous: str | None = None) -> UpdateRequest:
    return UpdateRequest(request_id="r", user_id=user, epoch=1, base_version=0, previous_summary=previous,
                         evidence=tuple(Evidence(event_id=i) for i in ids))  # fmt: skip


def test_summary_lists_event_ids_in_order() -> None:
    """A ledger summary is the previous ids followed by the new evidence ids."""
    backend = LedgerBackend()
    out = asyncio.run(backend.update(request("u", ["c", "d"], previous="a\nb")))
    assert isinstance(out, UpdateSuccess) and parse_ledger(out.summary) == ["a", "b", "c", "d"]


def test_injected_failures_per_user_then_success() -> None:
    """Users with the failing prefix fail their first fail_times updates, then succeed."""
    backend = LedgerBackend(fail_user_prefix="bad-", fail_times=2)
    outs = [asyncio.run(backend.update(request("bad-1", ["a"]))) for _ in range(3)]
    assert [type(o) for o in outs] == [UpdateFailure, UpdateFailure, UpdateSuccess]
    assert isinstance(asyncio.run(backend.update(request("good", ["a"]))), UpdateSuccess)


def test_cancel_counts_an_abort() -> None:
    """Cancelling a slow update aborts it."""
    backend = LedgerBackend(delay_s=10)

    async def go() -> None:
        task = asyncio.create_task(backend.update(request("u", ["a"])))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert backend.cancelled == 1
