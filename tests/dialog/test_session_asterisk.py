"""The dialog through the real Asterisk: a SIP caller (SIPp, G.711) talks over the agent.

Real VAD, STT and TTS; the scripted fake LLM (tests/fakes.py) gives a long reply so there is
something to interrupt (the bundled base model cannot be made to). Asterisk's MixMonitor records
the SIP leg both ways, aligned, so the test reads what the caller really heard.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from media.pcm import resample
from audiosocket.server import AudioSocketServer, CallSession
from bench.dialog_asterisk import analyse, read_wav
from bench.dialog import voiced_bounds
from devtools.utterances import synthesize_set
from models.engines import EngineConfig, Engines
from devtools import sipcall, testbed
from phoneagent.dialog.context import CUT_MARK
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog
from tests.fakes import ScriptedLLM

pytestmark = pytest.mark.asterisk

LONG = ("Sure. Our opening hours are eight in the morning to six in the evening, Monday to Friday, "
        "and nine to one on Saturdays. On public holidays the office is closed, but you can pay online.")


async def test_sip_caller_barges_in_and_the_agent_stops(asterisk_bed: testbed.AsteriskBed) -> None:
    loaded = await asyncio.to_thread(Engines.load, EngineConfig())
    engines = loaded.sharing(llm=ScriptedLLM([LONG, "Okay."], by_turn=True))
    dialogs: list[CallDialog] = []

    async def handler(session: CallSession) -> None:
        d = CallDialog(engines, AgentConfig(greeting="Hello."))
        dialogs.append(d)
        await d.run(session)

    server = AudioSocketServer(handler, "127.0.0.1", 0)
    await server.start()
    utts = synthesize_set()
    q = resample(utts[8].pcm16k, 16000, 8000)
    q = q[: int((voiced_bounds(q, 8000)[1] + 0.1) * 8000) * 2]
    rec = f"t-{uuid.uuid4().hex[:10]}"
    try:
        result = await asyncio.to_thread(
            sipcall.place_call, asterisk_bed.sip_host, asterisk_bed.sip_port, f"agent-port-{server.port}",
            [sipcall.Pause(2000), sipcall.Audio(q), sipcall.Pause(3000), sipcall.Audio(resample(utts[3].pcm16k, 16000, 8000)), sipcall.Pause(4000)],
            headers={"X-Phoneagent-Rec": rec},
        )
        assert result.ok, result.errors
        deadline = time.monotonic() + 5
        while server.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await server.close()
        await engines.close()
    d = dialogs[0]
    assert any(k == "barge_in" for _, k, _ in d.events), f"no barge-in: events {d.events}, turns {d.turns}"
    cut = next(t for t in d.turns if t["role"] == "agent" and t.get("interrupted"))
    assert cut["text"].endswith(CUT_MARK) and "public holidays" not in cut["text"]
    paths = {k: asterisk_bed.host_path(f"{testbed.RECORDING_DIR}/{rec}-{k}.wav") for k in ("said", "heard", "both")}
    for _ in range(100):
        if paths["said"].exists() and paths["heard"].exists():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    v2v, stop = analyse(read_wav(paths["said"]), read_wav(paths["heard"]))
    for p in paths.values():
        p.unlink(missing_ok=True)
    assert v2v is not None, "the caller heard no answer"
    assert stop is not None and stop < 500, f"the caller still heard the agent {stop} ms after talking over it"
