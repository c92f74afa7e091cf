"""Dialog flows through the real Asterisk 22 (SIP caller -> Stasis -> ARI controller ->
externalMedia -> the dialog), with the real VAD, STT and TTS: a backchannel does not stop the
agent, silence gets a reprompt then a goodbye, and an LLM that raises or hangs gets the spoken
fallback and a clean end. The LLMs are the named fakes in tests/fakes.py (the bundled 270M base
model cannot follow a script, fail or hang on cue).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ari_app.call import AriCall
from ari_app.config import RecordingConfig
from audiosocket.server import CallSession
from media.pcm import resample
from devtools.utterances import Utterance, say, synthesize_set
from db import AsyncCallStore
from models.base import LLM
from models.engines import EngineConfig, Engines
from devtools import sipcall, testbed
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog
from tests.ari.harness import ari_stack, wait_until
from tests.fakes import FailingLLM, HangingLLM, ScriptedLLM

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def engines() -> Iterator[Engines]:
    loaded = Engines.load(EngineConfig())
    yield loaded


@pytest.fixture(scope="module")
def utts() -> list[Utterance]:
    return synthesize_set()


def pcm8k(u: Utterance) -> bytes:
    """SIPp encodes it to G.711 mu-law on the wire: the caller's phone channel."""
    return resample(u.pcm16k, 16000, 8000)


async def run_call(bed: testbed.AsteriskBed, engines: Engines, llm: LLM, config: AgentConfig, steps: list[sipcall.Step],
                   tmp_path: Path, *, wait_for_bye: bool) -> tuple[CallDialog, AsyncCallStore]:
    dialogs: list[CallDialog] = []
    shared = engines.sharing(llm=llm)
    store = AsyncCallStore(f"sqlite:///{tmp_path}/calls.db")

    async def agent(session: CallSession, control: AriCall | None) -> None:
        d = CallDialog(shared, config, store=store, control=control)
        dialogs.append(d)
        await d.run(session)

    try:
        async with ari_stack(bed, agent=agent, store=store, recording=RecordingConfig(enabled=False)) as stack:
            result = await asyncio.to_thread(sipcall.place_call, bed.sip_host, bed.sip_port, "agent-ari", steps,
                                             wait_for_bye=wait_for_bye)
            assert result.ok, f"SIPp: {result.errors}\n{result.stderr}"
            await wait_until(lambda: not stack.ctl.calls, 10, "the call to end")
    finally:
        await shared.close_schedulers()
    assert dialogs, "the call never reached the dialog"
    return dialogs[0], store


async def test_backchannel_does_not_stop_the_agent(asterisk_bed: testbed.AsteriskBed, engines: Engines,
                                                   utts: list[Utterance], tmp_path: Path) -> None:
    reply = "Your balance is forty two pounds, due on the third of May. You can pay by card or by direct debit."
    mm = pcm8k(utts[2])[int(0.25 * 16000): int(0.45 * 16000)]  # 0.2 s of speech at 8 kHz: an "mm-hm"
    steps: list[sipcall.Step] = [sipcall.Pause(2000), sipcall.Audio(pcm8k(utts[0])), sipcall.Pause(2800),
                                 sipcall.Audio(mm), sipcall.Pause(8000)]
    d, store = await run_call(asterisk_bed, engines, ScriptedLLM([reply]), AgentConfig(greeting="Hi."), steps,
                              tmp_path, wait_for_bye=False)
    await store.aclose()
    assert not any(kind == "barge_in" for _, kind, _ in d.events), d.events
    answer = [t for t in d.turns if t["role"] == "agent"][-1]
    assert not answer["interrupted"] and "direct debit" in answer["text"], d.turns


ANSWER = ("Your balance is forty two pounds, due on the third of May. You can pay by card, by direct debit, "
          "or at any post office, and a receipt comes by email within a day.")


@pytest.mark.parametrize(("words", "voice", "speed", "acknowledgement"), [
    # Acknowledgements whisper tiny.en hears as words on every voice and channel of
    # bench/backchannels.py, and espeak's "uh huh"/"mm hmm" on voices where whisper writes them
    # as "uh uh" (withheld as "not speech") or "Mm"/"and Mm" on the G.711 channels. All of them
    # are heard right on every channel of bench/preroll.py, which cuts the audio as the dialog
    # does; en-us+m7's "mm hmm" is not ("And I'm" after the full 0.3 s pre-roll), so it is not here.
    ("okay", "en-us", 160, True), ("all right", "en-us+f3", 180, True), ("okay sure", "en-gb", 140, True),
    ("right", "en-us+m7", 150, True), ("uh huh", "en-us", 160, True), ("uh huh", "en-gb", 140, True),
    ("mm hmm", "en-us", 160, True), ("no", "en-us", 160, False), ("stop", "en-gb", 140, False),
    ("wait", "en-us+f3", 180, False),
], ids=lambda v: str(v).replace(" ", "-"))
async def test_acknowledgements_let_the_agent_go_on_and_short_interruptions_stop_it(
        asterisk_bed: testbed.AsteriskBed, engines: Engines, utts: list[Utterance], tmp_path: Path,
        words: str, voice: str, speed: int, acknowledgement: bool) -> None:
    """espeak-ng over G.711 while the agent reads a long answer: an acknowledgement of 0.3-1 s
    holds the agent only while its words are checked; "no"/"stop"/"wait" interrupt it."""
    said = say(words, voice=voice, speed=speed)
    steps: list[sipcall.Step] = [sipcall.Pause(2000), sipcall.Audio(pcm8k(utts[0])), sipcall.Pause(2800),
                                 sipcall.Audio(pcm8k(said)), sipcall.Pause(10000)]
    llm = ScriptedLLM([ANSWER, "Okay."], by_turn=True)
    d, store = await run_call(asterisk_bed, engines, llm, AgentConfig(greeting="Hi."), steps,
                              tmp_path, wait_for_bye=False)
    await store.aclose()
    kinds = [k for _, k, _ in d.events]
    assert "overlap_held" in kinds, d.events  # long enough to have interrupted by length alone
    answer = next((t for t in d.turns if t["role"] == "agent" and t["text"].startswith("Your balance")), None)
    assert answer is not None, ([m[-1].content for m in llm.calls], d.turns, d.events)
    callers = [t["text"] for t in d.turns if t["role"] == "caller"]
    if acknowledgement:
        assert "backchannel" in kinds and "barge_in" not in kinds, d.events
        assert not answer["interrupted"] and "within a day" in answer["text"], d.turns
        assert len(callers) == 1, callers  # the acknowledgement is no turn
    else:
        assert "barge_in" in kinds and "backchannel" not in kinds, d.events
        assert answer["interrupted"] and "within a day" not in answer["text"], d.turns
        assert len(callers) == 2 and words in callers[1].lower(), callers


async def test_silence_gets_a_reprompt_then_goodbye_and_the_caller_is_hung_up(
        asterisk_bed: testbed.AsteriskBed, engines: Engines, tmp_path: Path) -> None:
    steps: list[sipcall.Step] = [sipcall.Pause(12000)]
    d, store = await run_call(asterisk_bed, engines, ScriptedLLM(["unused"]),
                              AgentConfig(greeting="Hi.", no_input_s=1.5, max_reprompts=1), steps,
                              tmp_path, wait_for_bye=True)  # SIPp passes only if the agent hangs up
    kinds = [k for _, k, _ in d.events]
    assert kinds.count("reprompt") == 1 and "no_input_hangup" in kinds
    view = await store.get_call(d.call_id)
    await store.aclose()
    assert view is not None and view.outcome == "no_input" and view.end_reason == "agent_hangup"


@pytest.mark.parametrize("llm", [FailingLLM(["x"]), HangingLLM(["x"])], ids=["raises", "hangs"])
async def test_failing_llm_gets_the_fallback_and_a_clean_end(asterisk_bed: testbed.AsteriskBed, engines: Engines,
                                                             utts: list[Utterance], tmp_path: Path, llm: LLM) -> None:
    steps: list[sipcall.Step] = [sipcall.Pause(1500), sipcall.Audio(pcm8k(utts[0])), sipcall.Pause(15000)]
    d, store = await run_call(asterisk_bed, engines, llm, AgentConfig(greeting="Hi.", first_token_timeout_s=1.0),
                              steps, tmp_path, wait_for_bye=True)
    view = await store.get_call(d.call_id)
    await store.aclose()
    assert any(k == "engine_error" for _, k, _ in d.events)
    assert d.turns[-1]["role"] == "agent" and "technical trouble" in d.turns[-1]["text"]
    assert view is not None and view.outcome == "error" and view.end_reason == "agent_hangup"
