"""`ProfileView`: the latest profile per user from records of the compacted profiles topic. Pure, no I/O.

The profiles contract (`prefstream.schemas.profiles`): a user's records order by `(epoch, version)` and the
greatest is current; a tombstone (null value) means the user was forgotten, and the next profile after it
has a greater epoch. So a record at or below what is held is a repeat (a worker re-publishes after a crash
or a partition move) and is ignored, and a record of an epoch a tombstone has closed is a stale repeat that
must not bring the forgotten profile back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefstream.schemas.errors import RecordDecodeError
from prefstream.schemas.profiles import Profile, decode_profile

__all__ = ["ProfileChange", "ProfileView"]


@dataclass(frozen=True)
class ProfileChange:
    """A user's current profile changed: `profile` is the new one, None when the user was forgotten."""

    user_id: str
    profile: Profile | None
    previous: Profile | None

    @property
    def forgotten(self) -> bool:
        return self.profile is None


@dataclass
class ProfileView:
    """Latest profile per user; `apply()` one record at a time, in the topic's order within each partition."""

    _current: dict[str, Profile] = field(default_factory=dict)
    #: The greatest epoch a tombstone closed, per forgotten user: records at or below it are stale.
    _closed_epoch: dict[str, int] = field(default_factory=dict)
    #: Records that are not profiles of their key (a foreign writer on the topic); counted, never raised.
    skipped: int = 0

    def apply(self, key: bytes | None, value: bytes | None) -> ProfileChange | None:
        """Fold one record in; the change it makes, or None when it changes nothing."""
        if key is None:
            self.skipped += 1
            return None
        try:
            user_id = key.decode("utf-8")
        except UnicodeDecodeError:
            self.skipped += 1
            return None
        previous = self._current.get(user_id)
        if value is None:
            if previous is None:
                return None
            del self._current[user_id]
            self._closed_epoch[user_id] = max(previous.epoch, self._closed_epoch.get(user_id, 0))
            return ProfileChange(user_id, None, previous)
        try:
            profile = decode_profile(value)
        except RecordDecodeError:
            self.skipped += 1
            return None
        if profile.user_id != user_id:
            self.skipped += 1
            return None
        if profile.epoch <= self._closed_epoch.get(user_id, 0):
            return None
        if previous is not None and profile.order_key <= previous.order_key:
            return None
        self._current[user_id] = profile
        return ProfileChange(user_id, profile, previous)

    def get(self, user_id: str) -> Profile | None:
        """The user's current profile, or None (no profile yet, or forgotten)."""
        return self._current.get(user_id)

    def users(self) -> list[str]:
        """Every user with a current profile."""
        return list(self._current)

    def __len__(self) -> int:
        return len(self._current)
