"""`ProfileView`: the latest profile per user from profiles-topic records, as the contract orders them."""

from __future__ import annotations

from prefstream.client.view import ProfileView
from prefstream.schemas.profiles import Profile, encode_profile


def _profile(user: str, epoch: int, version: int, summary: str = "") -> Profile:
    return Profile(schema_version=1, user_id=user, epoch=epoch, version=version, summary=summary or f"{epoch}.{version}",
                   events_applied=version, updated_at="2026-01-01T00:00:00.000Z", last_event_ts="2026-01-01T00:00:00Z",
                   model="m", prompt_version="p")  # fmt: skip


def _apply(view: ProfileView, user: str, profile: Profile | None) -> object:
    return view.apply(user.encode(), None if profile is None else encode_profile(profile))


def test_newer_version_replaces_and_repeats_are_ignored() -> None:
    """A greater (epoch, version) replaces the profile; a repeat or an older record changes nothing."""
    view = ProfileView()
    first = _apply(view, "u", _profile("u", 1, 1))
    assert first is not None and first.previous is None
    change = _apply(view, "u", _profile("u", 1, 2))
    assert change is not None and change.previous == _profile("u", 1, 1)
    assert _apply(view, "u", _profile("u", 1, 2)) is None
    assert _apply(view, "u", _profile("u", 1, 1)) is None
    assert view.get("u") == _profile("u", 1, 2)


def test_tombstone_forgets_and_stale_repeats_do_not_resurrect() -> None:
    """A tombstone removes the user; a re-published record of the closed epoch is ignored; the next epoch counts."""
    view = ProfileView()
    _apply(view, "u", _profile("u", 1, 3))
    change = _apply(view, "u", None)
    assert change is not None and change.forgotten and change.previous == _profile("u", 1, 3)
    assert view.get("u") is None and len(view) == 0
    assert _apply(view, "u", _profile("u", 1, 4)) is None  # a worker re-publishing after a crash
    assert view.get("u") is None
    reborn = _apply(view, "u", _profile("u", 2, 1))
    assert reborn is not None and view.get("u") == _profile("u", 2, 1)


def test_tombstone_of_unknown_user_is_no_change() -> None:
    """A tombstone for a user the view never held changes nothing (compaction removed the older records)."""
    view = ProfileView()
    assert _apply(view, "u", None) is None


def test_foreign_records_are_skipped_and_counted() -> None:
    """Records without a key, with a key that is not their user, or that are not profiles are skipped."""
    view = ProfileView()
    assert view.apply(None, encode_profile(_profile("u", 1, 1))) is None
    assert _apply(view, "other", _profile("u", 1, 1)) is None
    assert view.apply(b"u", b"not json") is None
    assert view.apply(b"\xff", b"{}") is None
    assert view.skipped == 4 and len(view) == 0
