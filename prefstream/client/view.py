"""`ProfileView`: the latest profile per user from records of the compacted profiles topic. Pure, no I/O.

The profiles contract (`prefstream.schemas.profiles`): a user's records order by `(epoch, version)` and the
greatest is current; a tombstone (null value) means the user was forgotten, and the next profile after it
has a greater epoch. So a record at or below what is held is a repeat (a worker re-publishes after a crash
or a partition move) and is ignored, and a record of an epoch a tombstone has closed is a stale repeat that
must not bring the forgotten profile back.

Profiles are held by their message key, the user key (`prefstream.schemas.keys`): `user_id` without a
tenant, `tenant/user_id` with one, so the same user id in two tenants is two users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefstream.schemas.errors import RecordDecodeError
from prefstream.schemas.keys import split_key, user_key
from prefstream.schemas.profiles import Profile, decode_profile

__all__ = ["ProfileChange", "ProfileView", "tenant_of"]


def tenant_of(profile: Profile) -> str | None:
    """The profile's tenant, None without one (the record's `tenant` field is then absent)."""
    return profile.tenant if isinstance(profile.tenant, str) else None


@dataclass(frozen=True)
class ProfileChange:
    """A user's current profile changed: `profile` is the new one, None when the user was forgotten.

    `tenant` is the user's tenant (None without one): the same `user_id` in two tenants is two users.
    """

    user_id: str
    profile: Profile | None
    previous: Profile | None
    tenant: str | None = None

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
            ukey = key.decode("utf-8")
        except UnicodeDecodeError:
            self.skipped += 1
            return None
        tenant, user_id = split_key(ukey)
        previous = self._current.get(ukey)
        if value is None:
            if previous is None:
                return None
            del self._current[ukey]
            self._closed_epoch[ukey] = max(previous.epoch, self._closed_epoch.get(ukey, 0))
            return ProfileChange(user_id, None, previous, tenant)
        try:
            profile = decode_profile(value)
        except RecordDecodeError:
            self.skipped += 1
            return None
        if (tenant_of(profile), profile.user_id) != (tenant, user_id):  # not this key's profile
            self.skipped += 1
            return None
        if profile.epoch <= self._closed_epoch.get(ukey, 0):
            return None
        if previous is not None and profile.order_key <= previous.order_key:
            return None
        self._current[ukey] = profile
        return ProfileChange(user_id, profile, previous, tenant)

    def get(self, user_id: str, tenant: str | None = None) -> Profile | None:
        """The user's current profile, or None (no profile yet, or forgotten); `tenant`: the user's tenant."""
        return self._current.get(user_key(tenant, user_id))

    def users(self) -> list[str]:
        """The user key of every user with a current profile (`user_id`, or `tenant/user_id` with a tenant)."""
        return list(self._current)

    def __len__(self) -> int:
        return len(self._current)
