"""Console fixtures: Playwright driving Debian's headless chromium (Playwright cannot
download its own browsers here; `make test` installs chromium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless chromium per test module, not per session: Playwright's sync API keeps
    its event loop marked as running in the main thread while it is open, and every later
    ``asyncio.run`` in the process (the state, store and sink tests) would then fail with
    "cannot be called from a running event loop"."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def login(browser, url: str, user: str, password: str):  # type: ignore[no-untyped-def]
    """A new browser context logged in as ``user``; returns its page."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    page = ctx.new_page()
    page.goto(url + "login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(url)
    return page
