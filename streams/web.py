"""The worker's HTTP surface (faust's web server): the read API, health and metrics.

    GET /profiles/{user_id}   the current profile, from the owner of the user's partition (routed);
                              `?tenant=T` for a user of tenant T
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

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prefstream.schemas.bounds import TENANT_PATTERN
from prefstream.schemas.keys import user_key
from prefstream.schemas.profiles import encode_profile
from prefstream.streams.apply import to_profile_record
from prefstream.streams.partitioning import partition_for

log = structlog.get_logger(__name__)

__all__ = ["BrokerProbe", "register_routes"]

ROUTED_HEADER = "X-Prefstream-Routed"
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


async def profile_view(worker: Any, web: Any, request: Any, user_id: str) -> Any:
    """`GET /profiles/{user_id}[?tenant=T]`: the current profile from the owner of the user's partition."""
    tenant = request.query.get("tenant") or None
    if tenant is not None and not _TENANT.match(tenant):
        return web.json({"error": "invalid tenant: 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"},
                        status=400)  # fmt: skip
    key = user_key(tenant, user_id)
    partition = partition_for(key, worker.partitions)
    if partition in worker.scheduler.owned and not worker.scheduler.paused:
        profile = worker.store.profile(key)
        if profile is None:
            body = {"error": "no profile", "user_id": user_id} | ({"tenant": tenant} if tenant else {})
            return web.json(body, status=404)
        return web.bytes(encode_profile(to_profile_record(key, profile)), content_type="application/json")
    if request.headers.get(ROUTED_HEADER):
        # Routed here by a peer that believes we own it: the assignment is moving. Do not bounce.
        return web.json({"error": "partition not served here (rebalancing)"}, status=503)
    owner = owner_url(worker.app, worker.names["state"], partition)
    if owner is None:
        return web.json({"error": "owner unknown (rebalancing)"}, status=503)
    url = f"{owner.rstrip('/')}/profiles/{user_id}" + (f"?tenant={tenant}" if tenant else "")
    async with worker.app.http_client.get(url, headers={ROUTED_HEADER: "1"}) as response:
        body = await response.read()
        return web.bytes(body, content_type=response.content_type, status=response.status)


def owner_url(app: Any, changelog: str, partition: int) -> str | None:
    """The web URL of the worker that holds `partition` of the state (faust's assignment metadata)."""
    for url, topics in app.assignor.tables_metadata().items():
        if partition in topics.get(changelog, ()):
            return str(url)
    return None
