"""The worker's state: one changelogged RocksDB table, `{app_id}-state`.

Keys are UTF-8 with a one-letter prefix, so the three kinds of value share one changelog:

    u/<user_id>               `UserRecord`: content-free bookkeeping (`Meta`) and pending evidence, and
                              the source positions of its partition when it was written (`stamp`)
    p/<user_id>               `ProfileRecord`: the current summary and its provenance, and the last
                              PREFSTREAM_HISTORY_VERSIONS updates (`UpdateEntry`: summary, events, costs)
    o/<role>/<partition>      `SourceProgress`: the last source offset processed, and the last one
                              whose dead letter the broker confirmed (role: events, repartition, results)

How far the state goes is the later of the two: the progress record, and the stamps of the user records
(`streams.progress`). A message whose last write is its user's record (every accepted event, every
applied result) writes it with `final=True`, stamped, and needs no second write; any other message
writes the progress record. Nothing may be written after a final write (it would be a claim made too
early: a crash between the two would restore the message as done); the store refuses it.

Why one table. faust writes each table to its own changelog topic and the producer keeps order only
within one topic partition, so with one table per kind a crash could persist a user's dedupe memory
but not the event it remembers, or a version bump but not the summary it belongs to. In one table,
changelog partition p is an ordered record of every write made while processing partition p (faust
writes a change to the partition of the message being processed; aiokafka sends one batch per
partition at a time). Whatever a new owner restores is a state the old owner really had, and the
progress record restored with it says exactly which source offsets that state includes.

Every value carries `format` (`STATE_FORMAT`): a later release reads older values by it. Fields added
with a default keep the format (an older value reads with the default): `ProfileRecord.history`, added
after 0.2.0, is one, so a profile stored by 0.2.0 reads as one without history.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Final

import msgspec

from prefstream.streams.state import Meta, Pending, ProfileState, UpdateEntry

__all__ = ["ROLES", "STATE_FORMAT", "ProfileRecord", "SourceProgress", "Stamp", "Store", "UserRecord"]

#: Version of the stored values' layout (1: this layout, introduced in 0.2.0).
STATE_FORMAT: Final = 1

_USER: Final = b"u/"
_PROFILE: Final = b"p/"
_PROGRESS: Final = b"o/"

#: The source roles, in the order of a `Stamp`'s offsets.
ROLES: Final = ("events", "repartition", "results", "backfill")


class Stamp(msgspec.Struct, frozen=True, array_like=True):
    """A partition's source positions as of the write that carries it, that write's own message included:
    the last offset processed per role (`ROLES` order; -1: none known)."""

    partition: int
    offsets: tuple[int, ...]  # a stamp written before a role existed is shorter: the missing ones are -1


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A user's bookkeeping and pending evidence: the one value written per accepted event."""

    format: int = STATE_FORMAT
    meta: Meta = msgspec.field(default_factory=Meta)
    pending: Pending | None = None
    stamp: Stamp | None = None  # None: written outside a source message (migration) or by a release before it


class ProfileRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A user's current profile and its recent history (written only when an update is applied). The history
    lives in the same value so that a forget's one tombstone erases both."""

    format: int = STATE_FORMAT
    profile: ProfileState
    history: tuple[UpdateEntry, ...] = ()  # the last updates of the profile's epoch, oldest first (added after 0.2.0)


class SourceProgress(msgspec.Struct, frozen=True, kw_only=True):
    """How far the state includes one source partition (the same partition number as the state's)."""

    format: int = STATE_FORMAT
    offset: int  # the last offset processed: its effects, and those of every earlier offset, are in the state
    dead_lettered: int = -1  # the last offset whose dead letter the broker acknowledged


_ENC: Final = msgspec.msgpack.Encoder()
_USER_DEC: Final = msgspec.msgpack.Decoder(UserRecord)
_PROFILE_DEC: Final = msgspec.msgpack.Decoder(ProfileRecord)
_PROGRESS_DEC: Final = msgspec.msgpack.Decoder(SourceProgress)


class _StampOnly(msgspec.Struct):
    stamp: Stamp | None = None


_STAMP_DEC: Final = msgspec.msgpack.Decoder(_StampOnly)  # skips the rest of a user record unparsed into objects


def user_key(user_id: str) -> bytes:
    return _USER + user_id.encode("utf-8")


def profile_key(user_id: str) -> bytes:
    return _PROFILE + user_id.encode("utf-8")


def progress_key(role: str, partition: int) -> bytes:
    return _PROGRESS + f"{role}/{partition}".encode()


class Store:
    """Typed access to the state table. Writes must happen inside the agent's processing of a message
    of the partition they belong to (faust sends the change to that changelog partition)."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        #: Set by `SourceTracker.begin` for the message being processed: the positions with it (carried by its
        #: final write) and without it (carried by its other user writes, so that overwriting a user record
        #: never takes back a position it recorded).
        self.stamp: Stamp | None = None
        self.stamp_before: Stamp | None = None
        #: Whether the last write was a user record carrying `stamp` (then no progress record is needed).
        self.stamped_last = False

    def _write(self, key: bytes, value: bytes) -> None:
        if self.stamped_last:
            raise RuntimeError("a state write after the message's final write: its stamp claimed the message done")
        self.table[key] = value

    # --- users -------------------------------------------------------------------------------------

    def user(self, user_id: str) -> UserRecord:
        raw = self.table.get(user_key(user_id))
        return UserRecord() if raw is None else _USER_DEC.decode(raw)

    def has_user(self, user_id: str) -> bool:
        """Whether the user has a record (an event of theirs was accepted here, or they were forgotten)."""
        return self.table.get(user_key(user_id)) is not None

    def put_user(self, user_id: str, meta: Meta, pending: Pending | None, *, final: bool = False) -> None:
        """Write a user record. `final`: the message's last write, so it carries the source positions
        (`stamp`, when a message is being processed) and stands for the progress record."""
        stamp = self.stamp if final else self.stamp_before
        self._write(user_key(user_id), _ENC.encode(UserRecord(meta=meta, pending=pending, stamp=stamp)))
        self.stamped_last = final and stamp is not None

    def users(self) -> Iterator[tuple[str, UserRecord]]:
        """Every user record in the partitions this worker serves (a full scan: rebalances only)."""
        for key in list(self.table.keys()):
            if key.startswith(_USER):
                raw = self.table.get(key)
                if raw is not None:
                    yield key[len(_USER) :].decode("utf-8"), _USER_DEC.decode(raw)

    def stamps(self) -> dict[int, tuple[int, ...]]:
        """Per partition, the latest source positions the user records carry (a full scan: once per assignment).
        Positions only grow, so the role-wise maximum is the stamp of the partition's last user write."""
        latest: dict[int, tuple[int, ...]] = {}
        for key in list(self.table.keys()):
            if key.startswith(_USER):
                raw = self.table.get(key)
                stamp = None if raw is None else _STAMP_DEC.decode(raw).stamp
                if stamp is not None:
                    seen = latest.get(stamp.partition)
                    offsets = stamp.offsets + (-1,) * (len(ROLES) - len(stamp.offsets))
                    latest[stamp.partition] = offsets if seen is None else tuple(map(max, seen, offsets))
        return latest

    def rewrite_user(self, user_id: str) -> None:
        """Write the user's current records again, unchanged.

        A replayed offset's own writes may have stayed in the local store while their changelog records
        died with the producer (a crash after the write, before the send); the worker restarted on the same
        data dir then sees the replay as done. Writing the current values again puts them in the changelog,
        so the next owner of the partition restores them too."""
        for key in (user_key(user_id), profile_key(user_id)):
            raw = self.table.get(key)
            if raw is not None:
                self._write(key, raw)

    # --- profiles ----------------------------------------------------------------------------------

    def profile(self, user_id: str) -> ProfileState | None:
        record = self.profile_record(user_id)
        return None if record is None else record.profile

    def profile_record(self, user_id: str) -> ProfileRecord | None:
        """The profile with its history."""
        raw = self.table.get(profile_key(user_id))
        return None if raw is None else _PROFILE_DEC.decode(raw)

    def put_profile(self, user_id: str, profile: ProfileState, history: tuple[UpdateEntry, ...]) -> None:
        self._write(profile_key(user_id), _ENC.encode(ProfileRecord(profile=profile, history=history)))

    def delete_profile(self, user_id: str, *, always: bool = False) -> None:
        """Delete the stored profile (faust writes the changelog tombstone). `always`: write the tombstone
        even when the local store has no profile (a replayed forget: the first tombstone may be lost)."""
        key = profile_key(user_id)
        if always and key not in self.table:
            self._write(key, b"")  # faust deletes (and tombstones) only keys it has
        if key in self.table:
            if self.stamped_last:
                self._write(key, b"")  # refused: see `_write`
            del self.table[key]

    # --- source progress ---------------------------------------------------------------------------

    def progress(self, role: str, partition: int) -> SourceProgress | None:
        raw = self.table.get(progress_key(role, partition))
        return None if raw is None else _PROGRESS_DEC.decode(raw)

    def put_progress(self, role: str, partition: int, progress: SourceProgress) -> None:
        self._write(progress_key(role, partition), _ENC.encode(progress))
