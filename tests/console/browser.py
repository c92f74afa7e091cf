"""Headless Chromium for the console tests: Debian's chromium and chromium-driver (installed
by ./dev), driven by Selenium with the driver's path given (Selenium never downloads a browser
or driver), with no background network traffic (the machine may have no network at all)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
T = TypeVar("T")


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    for needed, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not needed.exists():
            raise RuntimeError(f"{needed} is missing: apt-get install {package} (./dev installs it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: Callable[[], T], timeout_s: float = 10.0, why: str = "", page: Any = None) -> T:
    """Poll `what` (in the test's worker thread) until it returns something truthy. With the
    driver as `page`, a timeout says what the page showed."""
    import time

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = what()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - an element not there yet
            last = exc
        time.sleep(0.1)
    shown = ""
    if page is not None:
        try:
            shown = f"; the page ({page.current_url}) showed: {page.execute_script('return document.body.innerText')[:800]!r}"
        except Exception as exc:  # noqa: BLE001 - the browser itself may be the problem
            shown = f"; the page could not be read: {exc}"
    raise AssertionError(f"timed out waiting for {why or what}" + (f" (last error: {last})" if last else "") + shown)


def screenshot(driver: Any, out: Path, name: str) -> Path:
    """Saved under the test's output directory; also copied to $PHONEAGENT_SCREENSHOTS when
    set (how README's pictures are made)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, min(max(height, 600) + 140, 2400))  # the whole page, within reason
    driver.save_screenshot(str(path))
    if extra := os.environ.get("PHONEAGENT_SCREENSHOTS"):
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / path.name)
    return path
