"""Debian's Chromium (``/usr/bin/chromium``, ``apt-get install chromium``), never a
downloaded build, launched headless by Playwright for the browser tests and benchmarks."""

from __future__ import annotations

import os

from playwright.sync_api import Browser, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)"


def missing_chromium() -> str | None:
    """What to install when Chromium is missing, else ``None``."""
    return None if os.access(CHROMIUM, os.X_OK) else MISSING


def launch(driver: Playwright) -> Browser:
    """Chromium, headless, with its background networking off."""
    return driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
