"""Debian's Chromium, headless, as the browser tests, the click benchmark and the README's
screenshot start it (Playwright for Python drives it; no browser of Playwright's own)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")

#: Without the background-networking flags Chromium keeps trying to reach Google's
#: services, which this machine's closed network refuses (and the tests forbid).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright: Playwright) -> Browser:
    """Headless Debian Chromium (WebGL through SwiftShader, which MapLibre needs)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
