"""The dialog through the ARI controller and the real Asterisk, with the real VAD, STT and TTS.

A SIP caller (SIPp, G.711) asks about a bill, types an account number (RFC 2833 digits), then
asks for a real person. The agent puts them on hold, dials the human leg
(Local/human-listen: it listens for 15 s, then presses 1), speaks the summary to the human only
with Piper, and leaves when the human accepts. The LLM is the scripted fake (tests/fakes.py):
the bundled 270M base model cannot follow a script; everything else is real. Whisper then
transcribes what the human heard.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ari_app.call import AriCall
from ari_app.config import RecordingConfig, TransferConfig
from media.pcm import resample
from audiosocket.server import CallSession
from devtools.utterances import synthesize_set
from db import AsyncCallStore
from models.engines import EngineConfig, Engines
from devtools import sipcall, testbed
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog
from tests.ari.harness import ari_stack, read_wav, wait_file, wait_until
from tests.fakes import ScriptedLLM

pytestmark = pytest.mark.asterisk


async def test_caller_asks_for_a_person_and_the_human_hears_the_summary(asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    loaded = await asyncio.to_thread(Engines.load, EngineConfig())
    engines = loaded.sharing(llm=ScriptedLLM(["Sure, I can help with your bill.", "Thanks, I have your account."], by_turn=True))
    store = AsyncCallStore(f"sqlite:///{tmp_path}/calls.db")
    dialogs: list[CallDialog] = []

    async def agent(session: CallSession, control: AriCall | None) -> None:
        d = CallDialog(engines, AgentConfig(greeting="Hello.", no_input_s=30), store=store, control=control)
        dialogs.append(d)
        await d.run(session)

    utts = synthesize_set()
    bill, person = (resample(utts[i].pcm16k, 16000, 8000) for i in (0, 10))
    steps: list[sipcall.Step] = [
        sipcall.Pause(4000), sipcall.Audio(bill), sipcall.Pause(3500),
        *(sipcall.Digit(d) for d in "4711#"), sipcall.Pause(3500),
        sipcall.Audio(person), sipcall.Pause(30000),
    ]
    transfer = TransferConfig(human_endpoint=f"Local/human-listen@{testbed.TEST_CONTEXT}", accept_timeout_s=5)
    try:
        async with ari_stack(asterisk_bed, agent=agent, store=store, transfer=transfer,
                             recording=RecordingConfig(notice="This call is recorded.")) as stack:
            result = await asyncio.to_thread(sipcall.place_call, asterisk_bed.sip_host, asterisk_bed.sip_port,
                                             "agent-ari", steps)
            assert result.ok, result.errors
            await wait_until(lambda: not stack.ctl.calls, 10, "the call to end")
            for _ in range(300):  # the recording is stored when Asterisk reports it finished (ms here;
                view = await store.get_call(dialogs[0].call_id) if dialogs else None  # a CI run once took > 10 s)
                if view is not None and view.recording_path:
                    break
                await asyncio.sleep(0.1)
            recordings_waiting = sorted(stack.ctl._recordings)
        assert dialogs, "the call never reached the dialog"
        d = dialogs[0]
        transfers = [detail for _, kind, detail in d.events if kind == "transfer"]
        assert transfers and transfers[0]["outcome"] == "accepted", d.events
        assert d.outcome == "transferred"
        assert any(t["role"] == "caller" and t["text"] == "(keypad) 4711" for t in d.turns), "\n".join(map(str, [*((t["role"], t["text"]) for t in d.turns), *d.events]))
        assert d.summary is not None and "4 7 1 1" in d.summary and "bill" in d.summary.lower(), d.summary
        # The consent notice comes first. On a slow runner the greeting can start late enough for the
        # caller's first words to overlap its end (a barge-in, by design), so only the notice is certain.
        assert d.turns[0]["text"].startswith("This call is recorded."), d.turns[0]
        view = await store.get_call(d.call_id)
        assert view is not None and view.summary == d.summary and view.outcome == "transferred"
        assert view.recording_path, f"no RecordingFinished handled in 30 s; controller still waits for {recordings_waiting}"
        assert asterisk_bed.host_path(view.recording_path).stat().st_size > 100_000
        heard_path = await wait_file(asterisk_bed.host_path(f"{testbed.RECORDING_DIR}/human-{d.call_id}-heard.wav"))
        pcm, rate = read_wav(heard_path)
        heard = (await asyncio.to_thread(engines.stt.transcribe, pcm[: rate * 15].tobytes(), rate)).text.lower()
        assert "bill" in heard and "caller" in heard, f"the human heard: {heard!r}"
    finally:
        await engines.close()
        await store.aclose()


async def test_a_known_caller_is_greeted_by_name_from_the_business_system(asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    """Caller context at call start, through the real parts: Asterisk's caller ID reaches the
    shipments agent's caller-lookup webhook (the sample backend over HTTP) before the greeting,
    and the greeting names the customer; with caller memory on, her call of yesterday (from the
    call records, her number written another way) is in the agent's context too. (No LLM is
    involved; the scripted one is never asked.)"""
    import uuid
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from db import AsyncCallStore, CallStore
    from phoneagent.dialog.config import CallerMemory
    from phoneagent.dialog.memory import LOOKUP
    from devtools.backend import serving
    from devtools.testbed import ari_request
    from phoneagent.agents.load import load_agents
    from phoneagent.tools.webhook import ToolRunner

    loaded = await asyncio.to_thread(Engines.load, EngineConfig())
    engines = loaded.sharing(llm=ScriptedLLM(["Okay."]))
    dialogs: list[CallDialog] = []
    earlier = str(uuid.uuid4())
    with CallStore(f"sqlite:///{tmp_path}/calls.db") as seed:
        seed.start_call(earlier, direction="inbound", caller="15551234567", agent="shipments",
                        started_at=datetime.now(UTC) - timedelta(days=1))
        seed.add_turn(earlier, "caller", "My order four five seven two is late.")
        seed.finish_call(earlier, end_reason="caller_hangup", outcome="completed")
    store = AsyncCallStore(f"sqlite:///{tmp_path}/calls.db")
    try:
        async with serving(tmp_path / "business.sqlite") as url:
            ship = load_agents(Path(__file__).resolve().parents[2] / "agents", env={"SAMPLE_BACKEND_URL": url})["shipments"]
            runner = ToolRunner(ship.webhooks, ship.allowed_hosts)
            config = replace(ship.config, caller_memory=CallerMemory())

            async def agent(session: CallSession, control: AriCall | None) -> None:
                d = CallDialog(engines, config, control=control, tools=runner, store=store)
                dialogs.append(d)
                await d.run(session)

            try:
                async with ari_stack(asterisk_bed, agent=agent, recording=RecordingConfig(enabled=False)) as stack:
                    chan = await asyncio.to_thread(ari_request, asterisk_bed, "POST", "/channels", {
                        "endpoint": f"Local/silence@{testbed.TEST_CONTEXT}", "context": testbed.TEST_CONTEXT,
                        "extension": "agent-ari", "priority": "1", "timeout": "30", "callerId": "Maria <+1 555 123 4567>"})
                    await wait_until(lambda: bool(dialogs) and bool(dialogs[0].turns), 30, "the greeting")
                    await stack.client.hangup(str(chan["id"]))
                    await wait_until(lambda: not stack.ctl.calls, 10, "the call to end")
            finally:
                await runner.aclose()
    finally:
        await engines.close()
        await store.aclose()
    d = dialogs[0]
    # (with the events: a CI run once recorded the greeting cut after its first clause)
    assert d.turns[0]["text"] == "Hello Maria Lopez, this is Northwind Shipping. How can I help you today?", (d.turns, d.events)
    memory = next(m for m in d.conversation.history if m.role == "tool" and m.name == LOOKUP)
    assert "My order four five seven two is late." in memory.content and earlier in str(d.events)
    lookup = next(detail for _, kind, detail in d.events if kind == "caller_lookup")
    assert lookup["arguments"] == {"phone": "15551234567"} and lookup["ok"] and lookup["result"]["customer_id"] == "C001"
    assert any(m.role == "tool" and "4572" in m.content for m in d.conversation.history)  # her open order, in context
