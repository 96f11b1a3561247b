"""The profile inspector: a read-only web page on the worker's web port (off unless PREFSTREAM_INSPECTOR_ENABLED).

    GET /inspector                        the page (one HTML file, one script, one style sheet; no framework)
    GET /inspector/static/{name}          inspector.js, inspector.css
    GET /inspector/api/users/{user_id}    one user's `InspectorView` (JSON), from the owner of its partition

Every route needs PREFSTREAM_INSPECTOR_TOKEN, as the HTTP Basic password (any user name: a browser asks
for it once) or as `Authorization: Bearer <token>`; anything else gets 401. The token never travels in a
URL (so no access log or browser history holds it), is compared in constant time, and is never logged.
The routes only read the state: no method but GET is served.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from importlib import resources
from typing import Any, Final

import structlog

from prefstream.logs import user_ref
from prefstream.schemas.bounds import TENANT_PATTERN, USER_ID_PATTERN
from prefstream.schemas.keys import split_key, user_key
from prefstream.streams.apply import to_profile_record
from prefstream.streams.inspector_view import encode_view, user_view
from prefstream.streams.partitioning import partition_for
from prefstream.streams.web import ROUTED_HEADER, owner_url

log = structlog.get_logger(__name__)

__all__ = ["authorized", "register_inspector"]

_STATIC: Final = {"inspector.js": "text/javascript", "inspector.css": "text/css"}
_USER_ID: Final = re.compile(USER_ID_PATTERN)
_TENANT: Final = re.compile(TENANT_PATTERN)
#: The page loads nothing but its own script and style sheet, and may not be framed.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # user text: never kept by a browser or proxy cache
}
_CHALLENGE: Final = {"WWW-Authenticate": 'Basic realm="prefstream inspector", charset="UTF-8"'}


def authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries `token` (Bearer, or Basic with any user name)."""
    if not header or not token:
        return False
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        given = value.strip()
    elif scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, sep, given = decoded.partition(":")
        if not sep:
            return False
    else:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def _asset(name: str) -> bytes:
    return (resources.files("prefstream.streams") / "static" / name).read_bytes()


def register_inspector(app: Any, worker: Any) -> None:
    """Add the inspector's routes to the faust app. `worker` is the `streams.app.StreamApp`."""
    audit = worker.settings.audit
    token: str = audit.inspector_token or ""
    page = _asset("inspector.html")
    assets = {name: (_asset(name), content_type) for name, content_type in _STATIC.items()}

    def denied(web: Any, request: Any) -> Any | None:
        if authorized(request.headers.get("Authorization"), token):
            return None
        return web.json({"error": "unauthorized: the inspector needs PREFSTREAM_INSPECTOR_TOKEN"}, status=401,
                        headers=dict(_CHALLENGE))  # fmt: skip

    @app.page("/inspector")
    async def inspector_page(web: Any, request: Any) -> Any:
        refused = denied(web, request)
        if refused is not None:
            return refused
        return web.bytes(page, content_type="text/html", headers=dict(_PAGE_HEADERS))

    @app.page("/inspector/static/{name}")
    async def inspector_static(web: Any, request: Any, name: str) -> Any:
        refused = denied(web, request)
        if refused is not None:
            return refused
        if name not in assets:
            return web.json({"error": "no such file"}, status=404)
        body, content_type = assets[name]
        return web.bytes(body, content_type=content_type, headers=dict(_PAGE_HEADERS))

    @app.page("/inspector/api/users/{user_id}")
    async def inspector_user(web: Any, request: Any, user_id: str) -> Any:
        refused = denied(web, request)
        if refused is not None:
            return refused
        if not _USER_ID.fullmatch(user_id):
            return web.json({"error": "not a user id (1-128 of A-Z a-z 0-9 . _ - : @ + =)"}, status=400)
        tenant = request.query.get("tenant") or None  # a tenant's user: its state is under `tenant/user_id`
        if tenant is not None and not _TENANT.fullmatch(tenant):
            return web.json({"error": "not a tenant (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)"},
                            status=400)  # fmt: skip
        return await _user(worker, web, request, user_key(tenant, user_id))


async def _user(worker: Any, web: Any, request: Any, user_id: str) -> Any:
    partition = partition_for(user_id, worker.partitions)
    headers = {"Cache-Control": "no-store"}
    if partition in worker.scheduler.owned and not worker.scheduler.paused:
        store = worker.store
        if not store.has_user(user_id):
            return web.json({"error": "no such user on this deployment", "user_id": user_id}, status=404,
                            headers=headers)  # fmt: skip
        user, stored = store.user(user_id), store.profile_record(user_id)
        view = user_view(
            user_id, partition=partition, served_by=str(worker.app.conf.canonical_url), meta=user.meta,
            pending=user.pending, profile=to_profile_record(user_id, stored.profile) if stored else None,
            history=stored.history if stored else (), versions_kept=worker.settings.audit.history_versions,
            in_flight=user_id in worker.scheduler.inflight,
        )  # fmt: skip
        log.info("inspector_lookup", user=user_ref(user_id), partition=partition)
        return web.bytes(encode_view(view), content_type="application/json", headers=headers)
    if request.headers.get(ROUTED_HEADER):
        return web.json({"error": "partition not served here (rebalancing)"}, status=503)
    owner = owner_url(worker.app, worker.names["state"], partition)
    if owner is None:
        return web.json({"error": "owner unknown (rebalancing)"}, status=503)
    tenant, plain = split_key(user_id)
    url = f"{owner.rstrip('/')}/inspector/api/users/{plain}" + (f"?tenant={tenant}" if tenant else "")
    forward = {ROUTED_HEADER: "1", "Authorization": request.headers.get("Authorization", "")}
    async with worker.app.http_client.get(url, headers=forward) as response:
        body = await response.read()
        return web.bytes(body, content_type=response.content_type, status=response.status, headers=headers)
