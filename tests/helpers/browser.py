"""Headless Debian Chromium driven through Selenium, cut off from every network but this machine's.

The driver and the browser are the Debian packages' (``chromium``, ``chromium-driver``), named
explicitly: Selenium then never runs selenium-manager, which would otherwise download a driver, and
the guard below makes sure of it. Two locks keep the browser local: every host name resolves to
nothing but 127.0.0.1, and every other request goes to a proxy on a closed port; a request log (the
DevTools ``Network`` events) lets a test prove that nothing left the machine anyway.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.selenium_manager import SeleniumManager

CHROMIUM = Path(os.environ.get("SEMID_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("SEMID_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
INSTALL_HINT = (
    "install Debian's packages: `sudo apt-get install chromium chromium-driver` (`.ci/run` does this), "
    "or point SEMID_TEST_CHROMIUM and SEMID_TEST_CHROMEDRIVER at a Chromium and its matching chromedriver"
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
_LOCAL_SCHEMES = frozenset({"data", "blob", "about", "chrome", "devtools"})
_CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # discard: nothing listens, so anything sent here fails


class BrowserMissing(RuntimeError):
    """Chromium or chromedriver is not installed where the tests look for it."""


def missing_browser_parts() -> list[str]:
    return [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]


def _refuse_selenium_manager(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise AssertionError("selenium-manager must not run: it would download a driver; pass the driver path")


def _options(user_data_dir: str, width: int, height: int) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
        f"--proxy-server={_CLOSED_PORT_PROXY}",  # IP literals skip the resolver; they still go nowhere
        f"--user-data-dir={user_data_dir}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return options


@contextmanager
def headless_chromium(*, width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with no network beyond this machine; quit and its profile removed afterwards."""
    missing = missing_browser_parts()
    if missing:
        raise BrowserMissing(f"no {' or '.join(missing)}: {INSTALL_HINT}")
    original = SeleniumManager.binary_paths
    SeleniumManager.binary_paths = _refuse_selenium_manager  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="semid-chromium-") as profile:
            service = Service(executable_path=str(CHROMEDRIVER))
            driver = webdriver.Chrome(service=service, options=_options(profile, width, height))
            try:
                yield driver
            finally:
                driver.quit()
    finally:
        SeleniumManager.binary_paths = original  # type: ignore[method-assign]


@dataclass(frozen=True)
class Requests:
    sent: list[str]  # every URL the browser asked its network stack for
    blocked_by_policy: list[str]  # URLs the page asked for and its Content-Security-Policy refused


def read_requests(driver: webdriver.Chrome) -> Requests:
    """The browser's requests since the last call (reading the log empties it)."""
    urls: dict[str, str] = {}
    blocked: set[str] = set()
    for entry in driver.get_log("performance"):  # type: ignore[no-untyped-call]
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = str(params["request"]["url"])
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason") == "csp":
            blocked.add(params["requestId"])
    return Requests(
        sent=[url for request, url in urls.items() if request not in blocked],
        blocked_by_policy=[url for request, url in urls.items() if request in blocked],
    )


def non_local(urls: list[str]) -> list[str]:
    """The URLs that would have left this machine."""
    outside = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in _LOCAL_SCHEMES and parts.hostname not in LOCAL_HOSTS:
            outside.append(url)
    return outside
