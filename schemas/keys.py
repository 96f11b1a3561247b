"""The key of a user: the Kafka message key of its events and records, and the key of its state.

A user id is unique per tenant. Without a tenant (a deployment that does not use tenants), the key is the
user id itself, exactly as before tenants existed; with one it is `tenant/user_id`. `/` is in neither
pattern, so the split is unambiguous. Every topic (events, profiles, failures, internal) is keyed, and
partitioned by murmur2, with the UTF-8 bytes of this key; the worker's state keys embed it too.
"""

from __future__ import annotations

from typing import Final

from prefstream.schemas.events import Event

__all__ = ["SEPARATOR", "event_key", "split_key", "user_key"]

SEPARATOR: Final = "/"


def user_key(tenant: str | None, user_id: str) -> str:
    """`user_id` without a tenant, `tenant/user_id` with one."""
    return user_id if tenant is None else f"{tenant}{SEPARATOR}{user_id}"


def split_key(key: str) -> tuple[str | None, str]:
    """(tenant, user_id) of a key built by `user_key`."""
    tenant, sep, user_id = key.rpartition(SEPARATOR)
    return (tenant, user_id) if sep else (None, user_id)


def event_key(event: Event) -> bytes:
    """The message key an event belongs under: the UTF-8 bytes of its user key."""
    return user_key(event.tenant, event.user_id).encode("utf-8")
