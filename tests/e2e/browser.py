"""A real headless Chromium for the page's end-to-end tests, driven by Playwright.

Debian's `chromium` package is used as is (`executable_path`), never a browser
downloaded by `playwright install`; `.ci/run` installs the package when it is
missing. Screenshots go to `SCREENSHOTS` (git-ignored) as test artifacts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

__all__ = ["CHROMIUM", "SCREENSHOTS", "browser"]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"

_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the session; each test opens its own contexts."""
    assert shutil.which(CHROMIUM), (
        f"{CHROMIUM} is missing: `apt-get install -y chromium` (bash .ci/run does it)"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()
