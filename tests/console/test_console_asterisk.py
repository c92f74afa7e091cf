"""A real call through Asterisk 22 (SIPp over G.711 -> Stasis -> ARI -> the dialog, recorded by
Asterisk) seen in the console in headless Chromium: in the live view while it runs, ended
there with the "End call" button (an ARI hangup the caller gets as a BYE), then in the list,
and on its page with the transcript, the waterfall and a recording that plays. The LLM is the
scripted fake (tests/fakes.py); VAD, STT, TTS, Asterisk, ARI and the browser are real."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ari_app.call import AriCall
from ari_app.config import RecordingConfig
from audiosocket.server import CallSession
from db import CallStore
from devtools import sipcall, testbed
from devtools.utterances import synthesize_set
from media.pcm import resample
from models.engines import EngineConfig, Engines
from phoneagent.console.app import console_app
from phoneagent.console.live import LiveCalls
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog
from phoneagent.metrics import CallMetrics, MeteredStore
from phoneagent.service import ConsoleActions, Controllers
from tests.ari.harness import ari_stack, wait_until
from tests.console.browser import chromium, screenshot, wait_for
from tests.console.seed import TOKEN
from tests.console.test_console_browser import log_in
from tests.fakes import ScriptedLLM

pytestmark = pytest.mark.asterisk


async def test_a_real_call_in_the_live_view_then_in_the_list_with_its_recording(
        asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    loaded = await asyncio.to_thread(Engines.load, EngineConfig())
    engines = loaded.sharing(llm=ScriptedLLM(["Your bill is forty two pounds, due on the third of May."]))
    live = LiveCalls(lambda: datetime.now(UTC))
    store = MeteredStore(CallStore(f"sqlite:///{tmp_path}/calls.db"), CallMetrics(), live)
    dialogs: dict[str, CallDialog] = {}
    actions = ConsoleActions(None, [], dialogs)  # the service's own button handler, bound below

    async def agent(session: CallSession, control: AriCall | None) -> None:
        d = CallDialog(engines, AgentConfig(greeting="Hello, how can I help?", no_input_s=60), store=store, control=control)
        dialogs[str(session.call_id)] = d
        await d.run(session)

    root = web.Application()
    root.add_subapp("/console/", console_app(store, live, TOKEN, actions=actions, recording_root=asterisk_bed.root))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/console"
    bill = resample(synthesize_set()[0].pcm16k, 16000, 8000)  # "Hi, I'm calling about my bill."
    steps: list[sipcall.Step] = [sipcall.Pause(3000), sipcall.Audio(bill), sipcall.Pause(40000)]  # ended from the console
    shots = tmp_path / "screenshots"

    def watch_live(driver: Any) -> None:
        from selenium.webdriver.common.by import By

        log_in(driver, base, TOKEN)
        driver.get(f"{base}/live")
        section = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".live-call"), 30, "the call in the live view", driver)
        # whisper over G.711 hears "calling about" or "calling out"; "my bill" is the caller's alone
        wait_for(lambda: "my bill" in section[0].text.lower(), 30, "the caller's words, live", driver)
        wait_for(lambda: "forty two pounds" in section[0].text, 30, "the agent's answer, live", driver)
        screenshot(driver, shots, "console-live-asterisk")
        section[0].find_element(By.CSS_SELECTOR, "button.act-end").click()
        wait_for(lambda: not driver.find_elements(By.CSS_SELECTOR, ".live-call"), 20, "the ended call to leave the live view", driver)

    try:
        async with ari_stack(asterisk_bed, agent=agent, store=store, recording=RecordingConfig()) as stack:
            actions.controllers, actions.servers = Controllers([stack.ctl]), [stack.server]
            with chromium(tmp_path / "profile") as driver:
                calling = asyncio.create_task(asyncio.to_thread(sipcall.place_call, asterisk_bed.sip_host, asterisk_bed.sip_port,
                                                                "agent-ari", steps, wait_for_bye=True))
                await asyncio.to_thread(watch_live, driver)  # its failure is the one to report
                result = await calling
                assert result.ok, f"SIPp got no BYE after the console's End call: {result.errors}"
                await wait_until(lambda: not stack.ctl.calls, 10, "the call to end")
                await wait_until(lambda: bool(dialogs), 1, "the dialog")
                call_id = next(iter(dialogs.values())).call_id
                for _ in range(100):  # the recording is stored when Asterisk reports it finished
                    view = await store.get_call(call_id)
                    if view is not None and view.recording_path:
                        break
                    await asyncio.sleep(0.1)

                def review() -> None:
                    from selenium.webdriver.common.by import By

                    driver.get(f"{base}/")
                    link = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, f'a[href="/console/calls/{call_id}"]'), 10, "the call in the list", driver)
                    link.click()
                    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".waterfall svg rect"), 10, "the waterfall", driver)
                    assert "my bill" in driver.page_source.lower() and "forty two pounds" in driver.page_source
                    duration = wait_for(lambda: driver.execute_script(
                        "const a = document.getElementById('player'); return a && a.readyState >= 1 ? a.duration : 0;"), 15,
                        "the recording to load", driver)
                    assert duration > 5, duration
                    screenshot(driver, shots, "console-call-asterisk")

                await asyncio.to_thread(review)
    finally:
        live.close()
        await runner.cleanup()
        await store.aclose()
        await engines.close_schedulers()
