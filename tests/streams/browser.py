"""A real headless Chromium for the inspector's tests: Debian's `chromium` package driven by Playwright.

Playwright's own browser builds come from a host these machines cannot reach, so it launches the system
browser (`scripts/bootstrap` installs it under CI). Without one the browser tests are skipped, except in
CI (`CI` set), where a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

#: How long one page action (navigation, a selector to appear) may take on a loaded 2-core machine.
PAGE_TIMEOUT_MS = 30_000


def chromium_path() -> str:
    """The system Chromium, or skip (fail under CI) when there is none."""
    path = os.environ.get("PREFSTREAM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        msg = "no chromium on PATH (apt-get install chromium; scripts/bootstrap does it under CI as root)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@contextmanager
def browser_context(credentials: tuple[str, str] | None) -> Iterator[Any]:
    """A fresh browser context (HTTP Basic `credentials` as (user, password), or none) in headless Chromium."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True)
        try:
            options: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
            if credentials is not None:
                options["http_credentials"] = {"username": credentials[0], "password": credentials[1]}
            context = browser.new_context(**options)
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            try:
                yield context
            finally:
                context.close()
        finally:
            browser.close()


def look_up(context: Any, base_url: str, user_id: str) -> Any:
    """Open the inspector, type `user_id`, submit, and return the page once the result (or an error) shows."""
    page = context.new_page()
    response = page.goto(f"{base_url}/inspector")
    assert response is not None and response.status == 200, response and response.status
    page.fill("#user", user_id)
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => !document.querySelector('#result').hidden || document.querySelector('#message.error')"
    )
    return page
