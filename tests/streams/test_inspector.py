"""The profile inspector: word diffs, the token check, the view of one user, and the page in a real Chromium
against a real worker (real broker, extractive backend)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from prefstream.schemas.evidence import Evidence, Triple
from prefstream.schemas.updates import decode_update
from prefstream.streams import state as st
from prefstream.streams.inspector import authorized
from prefstream.streams.inspector_view import DiffSegment, user_view, word_diff
from tests.streams.browser import browser_context, look_up
from tests.streams.harness import CI_WORKER_ENV, ProfileLog, Producer, TopicReader, Worker, event, wait_for

TOKEN = "inspector-test-token-7f3a9c"
USER = "traveller-42"
#: Three updates' worth of choices (query, chosen, rejected); the last round repeats a choice, so its count moves.
ROUNDS = [
    [("Where should I travel in May?", "Hiking trails in the Swiss Alps", "All-inclusive beach resort"),
     ("Pick a book for the train", "The Left Hand of Darkness", "A celebrity memoir"),
     ("Weekend plan?", "Climbing gym and a long lunch", "Shopping mall marathon")],
    [("Where to stay?", "Mountain hut with shared dorms", "Five-star city hotel"),
     ("Which podcast?", "A history of mountaineering", "Daily market news"),
     ("Dinner?", "Spicy Sichuan noodles", "Plain chicken salad")],
    [("Next trip?", "Hiking trails in the Swiss Alps", "Cruise around the Caribbean"),
     ("Gear to buy?", "Lightweight rain shell", "Designer sunglasses"),
     ("Film tonight?", "Free Solo", "A romantic comedy")],
]  # fmt: skip
PENDING = ("How to get to Vienna?", "Night train to Vienna", "Budget flight at 6 am")
PROFILE_TIMEOUT_S = 60.0


# --- pure -----------------------------------------------------------------------------------------


def test_word_diff_rebuilds_both_versions() -> None:
    """The diff's shared and removed runs spell the old summary, shared and added runs the new one, word by word
    with the original spacing; a changed word is one removal and one addition."""
    old = "Chose:\n- Hiking (x1)\n- Books (x1)"
    new = "Chose:\n- Hiking (x2)\n- Books (x1)\n- Films (x1)"
    diff = word_diff(old, new)
    assert "".join(s.text for s in diff if s.op != "+") == old
    assert "".join(s.text for s in diff if s.op != "-") == new
    assert DiffSegment("-", "(x1)") in diff and DiffSegment("+", "(x2)") in diff
    assert [s for s in diff if s.op == "+"][-1].text.split() == ["-", "Films", "(x1)"]
    assert word_diff("same text", "same text") == [DiffSegment("=", "same text")]
    assert word_diff("", "new") == [DiffSegment("+", "new")]


def test_only_the_token_opens_the_inspector() -> None:
    """Bearer and Basic (any user name) with the exact token pass; a wrong, partial or missing token, another
    scheme or a malformed Basic value do not."""

    def basic(user_pass: str) -> str:
        return "Basic " + base64.b64encode(user_pass.encode()).decode()

    assert authorized(f"Bearer {TOKEN}", TOKEN) and authorized(f"bearer  {TOKEN} ", TOKEN)
    assert authorized(basic(f"ops:{TOKEN}"), TOKEN) and authorized(basic(f":{TOKEN}"), TOKEN)
    for header in (None, "", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Token {TOKEN}", basic(TOKEN),
                   basic(f"ops:{TOKEN[:-1]}"), "Basic not-base64!", f"Basic {TOKEN}"):  # fmt: skip
        assert not authorized(header, TOKEN), header
    assert not authorized("Bearer ", "")  # no token configured: nothing passes


def _entry(version: int, summary: str, epoch: int = 1) -> st.UpdateEntry:
    return st.UpdateEntry(request_id=f"r{version}", epoch=epoch, version=version, summary=summary,
                          event_ids=(f"e{version}",), events_applied=version, triples=1, first_event_ts_ms=1_000,
                          last_event_ts_ms=2_000, prompt_tokens=10, completion_tokens=5, model="m", prompt_version="p",
                          backend="ledger", attempt=1, degraded=False, queued_ms=10_000, requested_ms=12_500,
                          finished_ms=13_000, applied_ms=13_020)  # fmt: skip


def test_view_lists_kept_versions_newest_first_with_diffs() -> None:
    """Versions come newest first, each diffed against the one before; the oldest kept one has no diff when its
    predecessor was dropped (version 1 is diffed against nothing); pending evidence and the failure state show."""
    history = tuple(_entry(v, f"likes item{v}") for v in (2, 3, 4))
    pending_event = st.PendingEvent(event_id="p1", evidence=Evidence(event_id="p1", triples=(
        Triple(query="q", chosen="Night train", rejected="Flight"),)), ts_ms=0, produced_ms=0, accepted_ms=5, tokens=3)  # fmt: skip
    meta = st.Meta(epoch=1, version=4, attempts=2, last_failure="timeout", next_retry_ms=20_000)
    view = user_view("u1", partition=1, served_by="http://w", meta=meta, pending=st.Pending(epoch=1, events=(pending_event,)),
                     profile=None, history=history, versions_kept=3, in_flight=True)  # fmt: skip
    assert [v.version for v in view.versions] == [4, 3, 2]
    assert view.versions[0].diff == [DiffSegment("=", "likes "), DiffSegment("-", "item3"), DiffSegment("+", "item4")]
    assert view.versions[-1].diff is None  # version 1 is no longer kept
    assert (view.versions[0].wait_s, view.versions[0].model_s, view.versions[0].apply_s) == (2.5, 0.5, 0.02)
    assert [p.event_id for p in view.pending] == ["p1"] and view.pending[0].triples[0].chosen == "Night train"
    assert view.state.failing.attempts == 2 and not view.state.failing.parked and view.state.in_flight
    first = user_view("u1", partition=1, served_by="", meta=st.Meta(version=1), pending=None, profile=None,
                      history=(_entry(1, "new"),), versions_kept=3, in_flight=False)  # fmt: skip
    assert first.versions[0].diff == [DiffSegment("+", "new")] and first.pending == []
    # Pending evidence of an earlier epoch (a forget since) is not the user's any more.
    stale = user_view("u1", partition=1, served_by="", meta=st.Meta(epoch=2), pending=st.Pending(epoch=1, events=(pending_event,)),
                      profile=None, history=history, versions_kept=3, in_flight=False)  # fmt: skip
    assert stale.pending == [] and stale.versions == []


# --- a real worker, a real browser ----------------------------------------------------------------


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    # A lone event stays pending: 3 events make an update, and the oldest waits up to 600 s otherwise.
    return {**test_env, **CI_WORKER_ENV, "PREFSTREAM_MODEL_BACKEND": "extractive", "PREFSTREAM_INSPECTOR_ENABLED": "true",
            "PREFSTREAM_INSPECTOR_TOKEN": TOKEN, "PREFSTREAM_FLUSH_MAX_WAIT_S": "600"}  # fmt: skip


def api(worker: Worker, user: str, authorization: str | None = f"Bearer {TOKEN}") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"{worker.url}/inspector/api/users/{user}")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def pair(event_id: str, query: str, chosen: str, rejected: str) -> dict[str, object]:
    return event(USER, event_id, query=query, chosen=chosen, rejected=rejected)


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_inspector_page_in_chromium(env: dict[str, str], worker: Worker, tmp_path: Path) -> None:
    """Against a real worker: the API answers only with the token (401 otherwise, the token never logged); the
    updates topic has one record per version naming its events, without user text; in headless Chromium the page
    looks the user up and shows the current summary, every version newest first with its word diff and folded
    events, and the pending event with its evidence. The screenshot is saved (PREFSTREAM_INSPECTOR_SCREENSHOT:
    also copied there, which is how docs/img/inspector.png is made)."""
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    producer = Producer(bootstrap, env["PREFSTREAM_EVENTS_TOPIC"], int(env["PREFSTREAM_PARTITIONS"]))
    profiles = ProfileLog(bootstrap, env["PREFSTREAM_PROFILES_TOPIC"])
    ids: list[list[str]] = []
    for r, choices in enumerate(ROUNDS, start=1):
        ids.append([f"trip-{r}{i}" for i in range(len(choices))])
        for event_id, choice in zip(ids[-1], choices, strict=True):
            producer.send(pair(event_id, *choice))
        producer.flush()

        def at_version(v: int = r) -> bool:
            profiles.poll()
            last = profiles.last(USER)
            return last is not None and last.version == v

        wait_for(at_version, PROFILE_TIMEOUT_S, f"profile version {r}", lambda: (profiles.by_user, worker.tail()))
    producer.send(pair("trip-pending", *PENDING))
    producer.flush()
    wait_for(lambda: len(json.loads(api(worker, USER)[2]).get("pending", [])) == 1, 30, "the pending event",
             lambda: api(worker, USER))  # fmt: skip
    current = profiles.last(USER)
    assert current is not None

    # 1. The token, and nothing else, opens the API; the answer is the stored state.
    status, headers, _ = api(worker, USER, authorization=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
    assert api(worker, USER, authorization="Bearer wrong-token-0000000000")[0] == 401
    status, headers, body = api(worker, USER)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    view = json.loads(body)
    assert view["profile"]["summary"] == current.summary and view["profile"]["version"] == 3
    assert [v["version"] for v in view["versions"]] == [3, 2, 1]
    assert [v["event_ids"] for v in view["versions"]] == ids[::-1]
    assert [p["event_id"] for p in view["pending"]] == ["trip-pending"]
    assert view["state"]["failing"] == {"attempts": 0, "last_failure": "", "next_retry_at": "", "batch_cap": 0,
                                        "parked": False}  # fmt: skip
    assert api(worker, "nobody-here")[0] == 404 and api(worker, "not%20an%20id")[0] == 400

    # 2. The audit trail: one record per version, the events it folded, no user text.
    updates = TopicReader(bootstrap, env["PREFSTREAM_UPDATES_TOPIC"])
    wait_for(lambda: len(updates.poll()) >= 3, 20, "update records")
    records = [decode_update(r.value) for r in updates.poll()]
    assert [(u.user_id, u.epoch, u.version, u.event_ids) for u in records] == [
        (USER, 1, v, ids[v - 1]) for v in (1, 2, 3)]  # fmt: skip
    last = records[-1]
    assert (last.summary, last.summary_chars, last.model, last.backend) == ("", len(current.summary), current.model,
                                                                          "extractive")  # fmt: skip
    assert last.queued_at <= last.requested_at <= last.finished_at <= last.applied_at == current.updated_at
    assert not any(b"Swiss Alps" in r.value for r in updates.poll())

    # 3. The page, in a real browser: refused without credentials, then the lookup with them.
    from playwright.sync_api import Error as BrowserError

    with browser_context(None) as anonymous, pytest.raises(BrowserError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        anonymous.new_page().goto(f"{worker.url}/inspector")  # the 401's challenge is not met: no page
    with browser_context(("ops", "wrong-token-0000000000")) as wrong:
        refused = wrong.new_page().goto(f"{worker.url}/inspector")
        assert refused is not None and refused.status == 401 and "unauthorized" in refused.text()
    with browser_context(("ops", TOKEN)) as context:
        page = look_up(context, worker.url, USER)
        assert page.locator("#message.error").count() == 0, page.inner_text("#message")
        assert page.inner_text("[data-testid=user-id]") == USER
        assert page.locator("[data-testid=summary]").text_content() == current.summary
        versions = page.locator("[data-testid=version]")
        assert [versions.nth(i).get_attribute("data-version") for i in range(versions.count())] == ["3", "2", "1"]
        v3, v2 = versions.nth(0), versions.nth(1)
        assert v3.locator("[data-testid=folded-event]").all_text_contents() == ids[2]
        assert "Mountain hut with shared dorms" in " ".join(v2.locator("ins").all_text_contents())
        assert "(x1)" in v3.locator("del").all_text_contents() and "(x2)" in v3.locator("ins").all_text_contents()
        row = page.locator("[data-testid=pending-event]")
        assert row.count() == 1 and "trip-pending" in row.inner_text() and PENDING[1] in row.inner_text()
        assert page.locator("[data-testid=healthy]").count() == 1 and page.locator("[data-testid=parked]").count() == 0
        shot = tmp_path / "inspector.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        target = os.environ.get("PREFSTREAM_INSPECTOR_SCREENSHOT")
        if target:
            shutil.copyfile(shot, target)
    assert TOKEN not in worker.log_path.read_text(errors="replace")
