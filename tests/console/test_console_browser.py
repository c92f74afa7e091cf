"""The console in a real headless Chromium against the console served on loopback: the token
refused and accepted, the list, a call page whose recording plays and highlights the turn being
played, the overview, and the live view updating as a call goes on. Screenshots are saved under
the test's output directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from db import AsyncCallStore
from phoneagent.console.app import console_app
from phoneagent.console.live import LiveCalls
from tests.console.browser import chromium, screenshot, wait_for
from tests.console.seed import NOW, TOKEN, seed
from tests.console.test_console import ButtonsSeen


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Any, LiveCalls, ButtonsSeen]]:
    seeded = seed(tmp_path)
    store, live, buttons = AsyncCallStore(seeded.url), LiveCalls(lambda: NOW), ButtonsSeen()
    root = web.Application()
    root.add_subapp("/console/", console_app(store, live, TOKEN, actions=buttons, clock=lambda: NOW))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/console", seeded, live, buttons
    finally:
        live.close()
        await runner.cleanup()
        await store.aclose()


def log_in(driver: Any, base: str, token: str, *, refused: bool = False) -> None:
    """Fill in the login form; wait for the outcome, or a navigation right after could abort
    the form's POST and land on the login page again."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    if refused:
        wait_for(lambda: "Wrong token." in driver.page_source, why="the refusal")
    else:
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "table.calls"), why="the call list after logging in")


async def test_review_a_transferred_call_in_the_browser(served: tuple[str, Any, LiveCalls, ButtonsSeen], tmp_path: Path) -> None:
    base, seeded, _, _ = served
    shots = tmp_path / "screenshots"

    def browse() -> None:
        from selenium.webdriver.common.by import By

        with chromium(tmp_path / "profile") as driver:
            log_in(driver, base, "not-the-token-at-all", refused=True)
            screenshot(driver, shots, "console-login-refused")
            log_in(driver, base, TOKEN)
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "table.calls tbody tr"), why="the call list")
            driver.find_element(By.NAME, "transferred").click()
            driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
            rows = wait_for(lambda: [r for r in driver.find_elements(By.CSS_SELECTOR, "table.calls tbody tr")
                                     if "transferred" in r.text], why="the transferred call")
            assert len(driver.find_elements(By.CSS_SELECTOR, "table.calls tbody tr")) == 1
            screenshot(driver, shots, "console-calls")
            rows[0].find_element(By.TAG_NAME, "a").click()
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".waterfall svg rect"), why="the waterfall")
            # The recording loads and plays; seeking into the third turn highlights it.
            duration = wait_for(lambda: driver.execute_script(
                "const a = document.getElementById('player'); return a.readyState >= 1 ? a.duration : 0;"), why="the recording")
            assert abs(duration - 6.0) < 0.1  # the seeded WAV is 6 s long
            driver.execute_script("const a = document.getElementById('player'); a.muted = true; a.play();")
            wait_for(lambda: driver.execute_script("return document.getElementById('player').currentTime > 0.2"), why="playback")
            driver.execute_script("document.getElementById('player').currentTime = 3.6;")
            playing = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".transcript li.playing"), why="the highlight")
            assert "left the depot" in playing[0].text
            driver.execute_script("document.getElementById('player').pause();")
            screenshot(driver, shots, "console-call")
            driver.get(f"{base}/overview?days=7")
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "svg.hours rect"), why="the hourly bars")
            assert "the caller asked for a person" in driver.page_source
            screenshot(driver, shots, "console-overview")

    await asyncio.to_thread(browse)
    assert {p.name for p in shots.iterdir()} == {"console-login-refused.png", "console-calls.png", "console-call.png",
                                                 "console-overview.png"}


async def test_the_live_view_follows_a_call_and_its_buttons_reach_the_service(
        served: tuple[str, Any, LiveCalls, ButtonsSeen], tmp_path: Path) -> None:
    base, _, live, buttons = served
    loop = asyncio.get_running_loop()

    def on_loop(fn: Any, *args: Any, **kw: Any) -> None:
        loop.call_soon_threadsafe(lambda: fn(*args, **kw))

    def browse() -> None:
        from selenium.webdriver.common.by import By

        with chromium(tmp_path / "profile") as driver:
            log_in(driver, base, TOKEN)
            driver.get(f"{base}/live")
            wait_for(lambda: "No calls in progress." in driver.page_source, why="the empty live view")
            on_loop(live.started, "c-live", direction="inbound", caller="+15550142", agent="support")
            wait_for(lambda: "+15550142" in driver.page_source, why="the new call")
            on_loop(live.turn, "c-live", "caller", "I'd like to change my delivery address.")
            wait_for(lambda: "change my delivery address" in driver.page_source, why="the caller's words")
            screenshot(driver, tmp_path / "screenshots", "console-live")
            driver.find_element(By.CSS_SELECTOR, "button.act-end").click()
            wait_for(lambda: buttons.pressed == [("end", "c-live")], why="the end button")
            on_loop(live.finished, "c-live", outcome="completed")
            wait_for(lambda: "No calls in progress." in driver.page_source, why="the call to leave the live view")

    await asyncio.to_thread(browse)
