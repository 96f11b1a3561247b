"""`ProfileApi` / `AsyncProfileApi`: one user's profile from the worker's read API (httpx), without reading the topic.

    GET {api_url}/profiles/{user_id}[?tenant=T]
                                        200: the profile record; 404: none (no profile yet, or forgotten);
                                        503: the owner is moving (rebalancing), asked again after a pause

Any worker answers (it routes to the one owning the user). `api_url` defaults to
`http://PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT`. `get()` has the same shape as `ProfileReader.get()`.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx

from prefstream.client.config import ClientConfig
from prefstream.client.errors import ReadApiError, ReadApiUnreachable
from prefstream.schemas.errors import RecordDecodeError
from prefstream.schemas.profiles import Profile, decode_profile

__all__ = ["AsyncProfileApi", "ProfileApi"]

TIMEOUT_S: Final = 5.0
#: Answers of 503 (an owner moving during a rebalance) are asked again this often, `BACKOFF_S` apart.
RETRIES: Final = 3
BACKOFF_S: Final = 0.5


def _path(user_id: str, tenant: str | None) -> str:
    path = f"/profiles/{quote(user_id, safe='')}"
    return path if tenant is None else f"{path}?tenant={quote(tenant, safe='')}"


def _unreachable(base_url: str, exc: Exception) -> ReadApiUnreachable:
    return ReadApiUnreachable(
        f"read API at {base_url} not reachable ({type(exc).__name__}); is a worker running there? "
        "Set PREFSTREAM_WEB_HOST and PREFSTREAM_WEB_PORT to a worker's address"
    )


def _answer(base_url: str, response: httpx.Response) -> Profile | None:
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise ReadApiError(f"read API at {base_url} answered {response.status_code}; see the worker's log")
    try:
        return decode_profile(response.content)
    except RecordDecodeError:
        raise ReadApiError(f"read API at {base_url} answered something that is not a profile record") from None


class ProfileApi:
    """A synchronous client of the read API."""

    def __init__(self, api_url: str, *, timeout_s: float = TIMEOUT_S, retries: int = RETRIES) -> None:
        self.api_url = api_url.rstrip("/")
        self._retries = retries
        self._http = httpx.Client(base_url=self.api_url, timeout=timeout_s)

    @classmethod
    def from_env(cls, **options: Any) -> ProfileApi:
        """The read API at `http://PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT`."""
        return cls(ClientConfig.from_env().api_url, **options)

    def get(self, user_id: str, tenant: str | None = None) -> Profile | None:
        """The user's current profile (None: no profile yet, or forgotten); `tenant`: the user's tenant. Raises
        `ReadApiError`."""
        for attempt in range(self._retries + 1):
            try:
                response = self._http.get(_path(user_id, tenant))
            except httpx.TransportError as exc:
                raise _unreachable(self.api_url, exc) from None
            if response.status_code != 503 or attempt == self._retries:
                return _answer(self.api_url, response)
            time.sleep(BACKOFF_S)
        raise AssertionError("unreachable")

    def ready(self) -> tuple[bool, str]:
        """Whether the worker answering at `api_url` is ready (`/readyz`), and why not."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            return False, f"{self.api_url} not reachable ({type(exc).__name__})"
        if response.status_code == 200:
            return True, ""
        try:
            reason = str(response.json().get("reason", ""))
        except ValueError:
            reason = ""
        return False, f"{self.api_url} not ready ({response.status_code}{': ' + reason if reason else ''})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProfileApi:
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncProfileApi:
    """An asyncio client of the read API."""

    def __init__(self, api_url: str, *, timeout_s: float = TIMEOUT_S, retries: int = RETRIES) -> None:
        self.api_url = api_url.rstrip("/")
        self._retries = retries
        self._http = httpx.AsyncClient(base_url=self.api_url, timeout=timeout_s)

    @classmethod
    def from_env(cls, **options: Any) -> AsyncProfileApi:
        """The read API at `http://PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT`."""
        return cls(ClientConfig.from_env().api_url, **options)

    async def get(self, user_id: str, tenant: str | None = None) -> Profile | None:
        """The user's current profile (None: no profile yet, or forgotten); `tenant`: the user's tenant. Raises
        `ReadApiError`."""
        for attempt in range(self._retries + 1):
            try:
                response = await self._http.get(_path(user_id, tenant))
            except httpx.TransportError as exc:
                raise _unreachable(self.api_url, exc) from None
            if response.status_code != 503 or attempt == self._retries:
                return _answer(self.api_url, response)
            await asyncio.sleep(BACKOFF_S)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncProfileApi:
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
