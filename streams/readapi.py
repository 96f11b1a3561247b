"""The commands' side of the worker's read API (`streams.web`): where it is, and one GET.

`prefstream parked` and `prefstream redrive` ask a running worker what it holds; any worker answers
for all (it routes or fans out to its peers).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from prefstream.settings import Settings
from prefstream.streams.errors import ReadApiError

T = TypeVar("T")

TIMEOUT_S = 10.0


def default_url(settings: Settings) -> str:
    """The read API of the worker this machine's settings describe."""
    return f"http://{settings.worker.web_host}:{settings.worker.web_port}"


def get(url: str, path: str, type_: type[T]) -> T:
    """GET `url` + `path` and decode the JSON answer as `type_`; any failure is one `ReadApiError` line."""
    import httpx

    target = f"{url.rstrip('/')}{path}"
    try:
        response = httpx.get(target, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise ReadApiError(
            f"cannot reach a worker's read API at {url} ({type(exc).__name__}); start a worker, or name one with "
            "--api URL (its PREFSTREAM_WEB_HOST:PREFSTREAM_WEB_PORT)"
        ) from None
    if response.status_code != 200:
        raise ReadApiError(f"{target} answered {response.status_code}: {response.text.strip()[:200]}")
    try:
        return msgspec.json.decode(response.content, type=type_)
    except msgspec.DecodeError:
        raise ReadApiError(f"{target} did not answer like a prefstream worker") from None
