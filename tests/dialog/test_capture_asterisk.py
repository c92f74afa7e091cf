"""A phone number captured over the phone, through the real parts: a SIP caller (SIPp, G.711
mu-law) -> the project's Asterisk 22 -> ARI -> the support agent from agents/support.yaml with the
bundled Qwen model, whisper tiny.en, Piper and silero VAD, and its callback webhook on the sample
business system. The caller asks for a call back, says the number, hears it read back in
groups, confirms; the ticket and the call record hold exactly the digits said.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ari_app.call import AriCall
from ari_app.config import RecordingConfig
from audiosocket.server import CallSession
from prometheus_client.parser import text_string_to_metric_families

from phoneagent.metrics import CallMetrics, MeteredStore
from devtools import sipcall, testbed
from devtools.backend import serving
from devtools.utterances import say
from media.pcm import resample
from models.engines import EngineConfig, Engines
from models.base import Message
from models.scheduler import Priority
from phoneagent.agents.load import load_agents
from phoneagent.dialog.actions import system_prompt
from phoneagent.dialog.session import CallDialog
from phoneagent.tools.webhook import ToolRunner
from tests.ari.harness import ari_stack, wait_until

pytestmark = pytest.mark.asterisk
AGENTS = Path(__file__).resolve().parents[2] / "agents"


def spoken(text: str, speed: int = 150) -> sipcall.Audio:
    return sipcall.Audio(resample(say(text, voice="en-us", speed=speed).pcm16k, 16000, 8000))


async def test_a_phone_number_is_read_back_confirmed_and_stored(asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    loaded = await asyncio.to_thread(Engines.load, EngineConfig(llm="qwen2.5-coder-0.5b-instruct"))
    metrics = CallMetrics()
    store = MeteredStore(f"sqlite:///{tmp_path}/calls.db", metrics)  # as the service wires it: /metrics sees the call
    dialogs: list[CallDialog] = []
    # A number without a digit said three times running: tiny.en often hears "five five five"
    # as "5 5" over G.711 (7-13 of 20 pre-roll/noise variants on an Intel Xeon, and so the
    # outcome depended on the CPU), while "four one five" was heard 20 of 20 with MKL/AVX-512
    # and with CTranslate2's AVX2/oneDNN path alike. Repeats are measured in bench.telephone_stt.
    steps: list[sipcall.Step] = [
        sipcall.Pause(4500), spoken("Hello. Could someone call me back on another number, please?"), sipcall.Pause(9000),
        spoken("Four one five, two three four, nine eight seven six.", speed=140), sipcall.Pause(9000),
        spoken("Yes, that's right."), sipcall.Pause(9000),
    ]
    try:
        async with serving(tmp_path / "business.sqlite") as url:
            support = load_agents(AGENTS, env={"SAMPLE_BACKEND_URL": url})["support"]
            runner = ToolRunner(support.webhooks, support.allowed_hosts)
            # As the service does before it takes calls (service.build_handlers): the agent's
            # instructions in the LLM's cache, so the first turn costs only its own words.
            await loaded.prefill([Message("system", system_prompt(support.config))], every_instance=True, priority=Priority.TURN)

            async def agent(session: CallSession, control: AriCall | None) -> None:
                d = CallDialog(loaded, support.config, store=store, control=control, tools=runner)
                dialogs.append(d)
                await d.run(session)

            try:
                async with ari_stack(asterisk_bed, agent=agent, store=store, recording=RecordingConfig(enabled=False)) as stack:
                    result = await asyncio.to_thread(sipcall.place_call, asterisk_bed.sip_host, asterisk_bed.sip_port, "agent-ari",
                                                     steps, wait_for_bye=False)
                    assert result.ok, f"SIPp: {result.errors}\n{result.stderr}"
                    await wait_until(lambda: not stack.ctl.calls, 10, "the call to end")
            finally:
                await runner.aclose()
        assert dialogs, "the call never reached the dialog"
        d = dialogs[0]
        story = f"turns: {d.turns}\nevents: {d.events}"
        kinds = [k for _, k, _ in d.events]
        assert "slot_read_back" in kinds and "slot_confirmed" in kinds, story
        agent_said = [t["text"] for t in d.turns if t["role"] == "agent"]
        assert "That's 4 1 5, 2 3 4, 9 8 7 6. Is that right?" in agent_said, story  # read back in groups
        tool = next(detail for _, k, detail in d.events if k == "tool_call")
        assert tool["name"] == "request_callback" and tool["ok"] and tool["arguments"]["phone"] == "4152349876", story
        assert agent_said[-1].startswith("Thank you. A colleague will call you back on 4 1 5 2 3 4 9 8 7 6"), story
        with sqlite3.connect(tmp_path / "business.sqlite") as db:
            assert db.execute("SELECT phone FROM tickets").fetchall() == [("4152349876",)]
        view = await store.get_call(d.call_id)
        assert view is not None
        confirmed = [e.detail for e in view.events if e.kind == "slot_confirmed"]
        assert confirmed and confirmed[0]["value"] == "4152349876" and confirmed[0]["typed"] is False, view.events
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}
        assert samples[("phoneagent_calls_active", ())] == 0
        assert samples[("phoneagent_calls_total", (("outcome", "completed"),))] == 1
        assert samples[("phoneagent_tool_calls_total", (("result", "ok"), ("tool", "request_callback")))] == 1
        assert samples[("phoneagent_events_total", (("kind", "slot_confirmed"),))] == 1
        assert samples[("phoneagent_turn_stage_seconds_count", (("stage", "v2v"),))] >= 2  # the ask and the read-back at least
    finally:
        await loaded.close()
        await store.aclose()
