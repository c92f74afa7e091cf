"""Outbound calls through the real Asterisk 22 with answering-machine detection.

The dialler originates Local/callee-<kind>@phoneagent-test: callee-human answers "Hello?" and
waits; callee-voicemail plays a recorded greeting (espeak-ng), a beep, then records a message.
The agent is the real dialog (real VAD, STT, TTS; the scripted fake LLM is never reached here):
it must decide within 3 s of answer, greet the person, and leave its message on the machine
after the beep (whisper reads what the machine recorded).
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from ari_app.call import AriCall
from ari_app.config import CallProfile, RecordingConfig
from ari_app.outbound import Dialer, OutboundConfig
from media.pcm import resample, tone
from audiosocket.server import CallSession
from devtools.utterances import _Spec, _espeak, _espeak_version, synthesize
from db import AsyncCallStore
from models.engines import EngineConfig, Engines
from devtools import testbed
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog
from tests.ari.harness import ari_stack, read_wav, wait_file, wait_until
from tests.fakes import ScriptedLLM

pytestmark = pytest.mark.asterisk

MESSAGE = "Hello, this is the phone agent with a message about your order. Please call us back."


def write_prompts(bed: testbed.AsteriskBed, cache: Path) -> None:
    """The callee prompts as 8 kHz WAV sound files for Playback()."""
    exe = _espeak()
    version = _espeak_version(exe)
    sounds = bed.host_path(testbed.TEST_SOUNDS_DIR)
    sounds.mkdir(parents=True, exist_ok=True)
    prompts = {
        "hello": synthesize(_Spec("Hello?", "en-us", 160), cache, exe, version),
        "voicemail": synthesize(_Spec("Hi, you've reached Anna Smith. I can't take your call right now. "
                                      "Please leave a message after the tone.", "en-us+f3", 165), cache, exe, version),
    }
    for name, pcm16k in prompts.items():
        _write_wav(sounds / f"{name}.wav", resample(pcm16k, 16000, 8000))
    _write_wav(sounds / "beep.wav", tone(1000.0, 500, 8000, amplitude=0.4))


def _write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)


async def test_outbound_human_and_voicemail(asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    write_prompts(asterisk_bed, tmp_path)
    loaded = await asyncio.to_thread(Engines.load, EngineConfig())
    engines = loaded.sharing(llm=ScriptedLLM(["Okay."]))
    store = AsyncCallStore(f"sqlite:///{tmp_path}/calls.db")
    dialogs: dict[str, CallDialog] = {}

    async def agent(session: CallSession, control: AriCall | None) -> None:
        assert control is not None and control.direction == "outbound"
        assert control.agent == "collections"  # the dialler's agent talks to whoever answers
        message = None if control.caller_number == "callee-machine" else MESSAGE  # None: hang up on machines
        d = CallDialog(engines, AgentConfig(voicemail_message=message, no_input_s=30), store=store, control=control)
        dialogs[control.caller_number] = d
        await d.run(session)

    try:
        async with ari_stack(asterisk_bed, agent=agent, store=store, recording=RecordingConfig(enabled=False),
                             agents={"collections": CallProfile(RecordingConfig(enabled=False))}) as stack:
            dialer = Dialer(stack.ctl, OutboundConfig(endpoint=f"Local/{{number}}@{testbed.TEST_CONTEXT}",
                                                      max_concurrent=2, min_interval_s=0.5, ring_timeout_s=10, agent="collections"))
            human, machine, busy, hangup = await asyncio.gather(
                dialer.call("callee-human", wait_end=False), dialer.call("callee-voicemail"),
                dialer.call("human-busy"), dialer.call("callee-machine"))
            assert human.outcome == "answered" and machine.outcome == "answered", (human, machine)
            assert busy.outcome == "busy", busy
            gaps = [b - a for a, b in zip(dialer.originated, dialer.originated[1:])]
            assert len(gaps) == 3 and min(gaps) >= 0.5 - 1e-3, gaps  # paced
            assert dialer.peak_active == 2  # four calls, at most two at once
            assert hangup.outcome == "answered"
            # the person got the greeting: end that call from the callee's side
            await wait_until(lambda: any(k == "amd" for _, k, _ in dialogs["callee-human"].events), 10, "the human decision")
            await wait_until(lambda: any(t["role"] == "agent" for t in dialogs["callee-human"].turns), 15, "the greeting")
            await stack.client.hangup(stack.ctl.calls[human.call_id].caller_id)
            await wait_until(lambda: not stack.ctl.calls and dialer.active == 0, 15, "both calls to end")
        amd = {n: next(dt for _, k, dt in d.events if k == "amd") for n, d in dialogs.items()}
        assert amd["callee-human"]["verdict"] == "human", amd
        assert amd["callee-voicemail"]["verdict"] == "machine", amd
        assert all(a["at_s"] <= 3.0 for a in amd.values()), amd
        assert amd["callee-voicemail"]["outcome"] == "machine_message_left"
        assert amd["callee-machine"]["verdict"] == "machine" and amd["callee-machine"]["outcome"] == "machine_hangup"
        views = {n: await store.get_call(r.call_id) for n, r in (("human", human), ("machine", machine), ("busy", busy), ("hangup", hangup))}
        assert views["hangup"] is not None and views["hangup"].outcome == "machine_hangup"
        assert views["machine"] is not None and views["machine"].outcome == "machine_message_left"
        assert views["machine"].direction == "outbound" and views["machine"].caller == "callee-voicemail"
        assert views["machine"].agent == "collections"
        assert views["busy"] is not None and views["busy"].outcome == "busy"
        assert views["human"] is not None and views["human"].answered_at is not None
        message = await wait_file(asterisk_bed.host_path(f"{testbed.RECORDING_DIR}/callee-{machine.call_id}-message.wav"))
        pcm, rate = read_wav(message)
        heard = (await asyncio.to_thread(engines.stt.transcribe, pcm.tobytes(), rate)).text.lower()
        assert "call us back" in heard or "message" in heard, f"the machine recorded: {heard!r}"
    finally:
        await engines.close()
        await store.aclose()
