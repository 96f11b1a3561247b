"""The worker's HTTP surface (faust's web server): the read API, health and metrics.

    GET /profiles/{user_id}   the current profile, from the owner of the user's partition (routed); a 404
                              ("no profile") carries the user's `state`, so waiting events are visible
    GET /users/{user_id}      the user's state: pending events, failing, parked (`streams.userstate`; routed)
                              (both take `?tenant=T` for a user of tenant T: docs/streams.md, "Tenants")
    GET /parked               the parked users of every worker (this one asks its peers)
    GET /livez                200 unless the model backend died (the worker then also stops)
    GET /readyz               200 only while the worker can do its job: backend up and healthy, broker
                              reachable, partitions assigned and their state recovered
    GET /metrics              Prometheus text, the worker's own registry
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prefstream.schemas.bounds import TENANT_PATTERN
from prefstream.schemas.keys import split_key, user_key
from prefstream.schemas.profiles import encode_profile
from prefstream.streams.apply import to_profile_record
from prefstream.streams.partitioning import partition_for
from prefstream.streams.userstate import ParkedList, UserState, user_state

log = structlog.get_logger(__name__)

__all__ = ["BrokerProbe", "register_routes"]

ROUTED_HEADER = "X-Prefstream-Routed"
_PARKED = msgspec.json.Decoder(ParkedList)
_PEER_TIMEOUT = aiohttp.ClientTimeout(total=5)
_TENANT = re.compile(TENANT_PATTERN)


@dataclass
class BrokerProbe:
    """Asks the broker for metadata every `interval_s`; connected while the last answer is recent."""

    make_consumer: Callable[[], Any]
    interval_s: float = 5.0
    timeout_s: float = 5.0
    last_ok: float | None = None
    last_error: str = ""
    _consumer: Any = field(default=None, repr=False)

    def connected(self) -> bool:
        return self.last_ok is not None and time.monotonic() - self.last_ok <= 2 * self.interval_s + self.timeout_s

    async def run(self) -> None:
        while True:
            try:
                if self._consumer is None:
                    consumer = self.make_consumer()
                    await asyncio.wait_for(consumer.start(), self.timeout_s)
                    self._consumer = consumer
                await asyncio.wait_for(self._consumer.topics(), self.timeout_s)
                self.last_ok, self.last_error = time.monotonic(), ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.last_error:
                    log.warning("broker_unreachable", error=type(exc).__name__)
                self.last_error = type(exc).__name__
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


def register_routes(app: Any, worker: Any) -> None:
    """Add the routes to the faust app. `worker` is the `streams.app.StreamApp`."""

    @app.page("/profiles/{user_id}")
    async def get_profile(web: Any, request: Any, user_id: str) -> Any:
        return await profile_view(worker, web, request, user_id)

    @app.page("/users/{user_id}")
    async def get_user(web: Any, request: Any, user_id: str) -> Any:
        return await user_view(worker, web, request, user_id)

    @app.page("/parked")
    async def get_parked(web: Any, request: Any) -> Any:
        return await parked_view(worker, web, request)

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        # Alive unless the backend died (the scheduler also stops the worker then; this covers the gap).
        fault = worker.backend_fault() if worker.backend_ready else None
        if fault is not None:
            return web.json({"status": "dead", "reason": fault}, status=503)
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready, why = worker.readiness()
        return web.json({"ready": ready, "reason": why}, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        body = generate_latest(worker.metrics.registry)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])


def _state(worker: Any, user_id: str, partition: int) -> UserState:
    store = worker.store
    return user_state(user_id, partition, store.user(user_id), store.profile(user_id),
                      user_id in worker.scheduler.inflight, exists=store.has_user(user_id))  # fmt: skip


def _tenant(request: Any) -> str | None:
    """The `?tenant=` of a request (None: none); ValueError when it is not a tenant name."""
    tenant = request.query.get("tenant") or None
    if tenant is not None and not _TENANT.match(tenant):
        raise ValueError(tenant)
    return tenant


_BAD_TENANT = {"error": "invalid tenant: 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"}


async def _routed(worker: Any, web: Any, request: Any, user_id: str, path: str,
                  local: Callable[[str, int], Any]) -> Any:  # fmt: skip
    """Answer with `local(user key, partition)` when this worker owns the user's partition, else ask the owner."""
    try:
        tenant = _tenant(request)
    except ValueError:
        return web.json(_BAD_TENANT, status=400)
    key = user_key(tenant, user_id)
    partition = partition_for(key, worker.partitions)
    if partition in worker.scheduler.owned and not worker.scheduler.paused:
        return local(key, partition)
    if request.headers.get(ROUTED_HEADER):
        # Routed here by a peer that believes we own it: the assignment is moving. Do not bounce.
        return web.json({"error": "partition not served here (rebalancing)"}, status=503)
    owner = owner_url(worker.app, worker.names["state"], partition)
    if owner is None:
        return web.json({"error": "owner unknown (rebalancing)"}, status=503)
    url = f"{owner.rstrip('/')}/{path}/{user_id}" + (f"?tenant={tenant}" if tenant else "")
    async with worker.app.http_client.get(url, headers={ROUTED_HEADER: "1"}) as response:
        body = await response.read()
        return web.bytes(body, content_type=response.content_type, status=response.status)


async def profile_view(worker: Any, web: Any, request: Any, user_id: str) -> Any:
    """`GET /profiles/{user_id}[?tenant=T]`: the current profile from the owner of the user's partition."""

    def local(key: str, partition: int) -> Any:
        profile = worker.store.profile(key)
        if profile is None:
            tenant, _ = split_key(key)
            state = msgspec.to_builtins(_state(worker, key, partition))
            body = {"error": "no profile", "user_id": user_id} | ({"tenant": tenant} if tenant else {})
            return web.json(body | {"state": state}, status=404)
        return web.bytes(encode_profile(to_profile_record(key, profile)), content_type="application/json")

    return await _routed(worker, web, request, user_id, "profiles", local)


async def user_view(worker: Any, web: Any, request: Any, user_id: str) -> Any:
    """`GET /users/{user_id}`: the user's state from the owner of the user's partition (200 even when unknown)."""

    def local(key: str, partition: int) -> Any:
        return web.bytes(msgspec.json.encode(_state(worker, key, partition)), content_type="application/json")

    return await _routed(worker, web, request, user_id, "users", local)


def local_parked(worker: Any) -> list[UserState]:
    """The parked users of the partitions this worker serves (the scheduler's views hold every user with
    pending events, parked ones included)."""
    views = worker.scheduler.views
    return [_state(worker, u, v.partition) for u, v in sorted(views.items()) if v.parked]


async def parked_view(worker: Any, web: Any, request: Any) -> Any:
    """`GET /parked`: this worker's parked users, and (unless asked by a peer) every other worker's."""
    parked, workers, unreachable = local_parked(worker), 1, []
    if not request.headers.get(ROUTED_HEADER):
        own = str(worker.app.conf.canonical_url).rstrip("/")
        peers = [u.rstrip("/") for u in worker.app.assignor.tables_metadata() if str(u).rstrip("/") != own]
        for peer in peers:
            try:
                async with worker.app.http_client.get(f"{peer}/parked", headers={ROUTED_HEADER: "1"},
                                                      timeout=_PEER_TIMEOUT) as response:  # fmt: skip
                    answer = _PARKED.decode(await response.read())
                parked += answer.parked
                workers += 1
            except Exception as exc:  # a peer that is down or restarting: say so, keep the others
                log.warning("parked_peer_unreachable", error=type(exc).__name__)
                unreachable.append(peer)
    listing = ParkedList(parked=sorted(parked, key=lambda s: s.user_id), workers=workers, unreachable=unreachable)
    return web.bytes(msgspec.json.encode(listing), content_type="application/json")


def owner_url(app: Any, changelog: str, partition: int) -> str | None:
    """The web URL of the worker that holds `partition` of the state (faust's assignment metadata)."""
    for url, topics in app.assignor.tables_metadata().items():
        if partition in topics.get(changelog, ()):
            return str(url)
    return None
