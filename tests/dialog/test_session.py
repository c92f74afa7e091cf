"""The dialog loop end to end over the AudioSocket wire, with real VAD, STT and TTS.

A caller emulator (devtools/caller.py) speaks espeak-ng utterances through a G.711 phone channel in
real time. The LLM is the real default model (Qwen 0.5B instruct) in the first test; dialog-flow
tests use the scripted fakes in tests/fakes.py, because a small model does not follow a script word
for word. Backchannel, silence and engine-failure flows run through the real Asterisk instead
(test_dialog_flows_asterisk.py) and on virtual time (test_dialog_virtual.py): no third copy here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from media.pcm import resample
from audiosocket.server import AudioSocketServer, CallSession
from devtools.caller import CallerEmulator
from bench.dialog import voiced_bounds
from devtools.utterances import Utterance, say, synthesize_set
from db import AsyncCallStore
from models.base import LLM, TTS, AudioChunk, CancelToken
from models.engines import EngineConfig, Engines
from models.scheduler import Priority
from phoneagent.dialog.context import CUT_MARK
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog
from tests.fakes import ScriptedLLM, WordlessAfterFirstSTT

LONG_REPLY = (
    "Sure, I can help with that. Our opening hours are eight in the morning to six in the evening, "
    "Monday to Friday, and nine to one on Saturdays. On public holidays the office is closed, "
    "but you can still pay your bill online at any time, day or night."
)


@pytest.fixture(scope="module")
def real_engines() -> Engines:
    return Engines.load(EngineConfig())


@pytest.fixture(scope="module")
def utts() -> list[Utterance]:
    return synthesize_set()


class Harness:
    def __init__(self, engines: Engines, llm: LLM | None, config: AgentConfig, store: AsyncCallStore | None) -> None:
        self.engines = engines.sharing(llm=llm)
        self.config = config
        self.store = store
        self.dialogs: list[CallDialog] = []
        self.done = asyncio.Event()

    async def handler(self, session: CallSession) -> None:
        d = CallDialog(self.engines, self.config, store=self.store)
        self.dialogs.append(d)
        try:
            await d.run(session)
        finally:
            self.done.set()


@pytest.fixture
async def harness(real_engines: Engines, tmp_path: Any) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[Harness, AudioSocketServer]] = []

    async def make(llm: LLM | None = None, **cfg: Any) -> tuple[Harness, AudioSocketServer]:
        store = AsyncCallStore(f"sqlite:///{tmp_path}/calls.db")
        h = Harness(real_engines, llm, AgentConfig(**cfg), store)
        srv = AudioSocketServer(h.handler, "127.0.0.1", 0)
        await srv.start()
        made.append((h, srv))
        return h, srv

    yield make
    for h, srv in made:
        await srv.close()
        await h.engines.close_schedulers()
        if h.store is not None:
            await h.store.aclose()


@contextlib.asynccontextmanager
async def _agent(engines: Engines, config: AgentConfig) -> AsyncIterator[tuple[int, list[CallDialog]]]:
    """An AudioSocket server running CallDialog on `engines` (for tests that swap an engine)."""
    dialogs: list[CallDialog] = []

    async def handler(session: CallSession) -> None:
        d = CallDialog(engines, config)
        dialogs.append(d)
        await d.run(session)

    srv = AudioSocketServer(handler, "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv.port, dialogs
    finally:
        await srv.close()
        await engines.close_schedulers()


async def test_spoken_question_gets_a_spoken_answer_with_real_llm(harness, utts, real_engines) -> None:  # type: ignore[no-untyped-def]
    h, srv = await harness(greeting="Hello.")
    async with CallerEmulator("127.0.0.1", srv.port) as caller:
        assert await caller.wait_agent_done(quiet_s=0.5, timeout=15), "no greeting heard"
        _, t_end = await caller.say(utts[8].pcm16k)  # "What time do you close on Saturday?"
        assert await caller.wait_agent_done(since=t_end, quiet_s=1.0, timeout=40), "no answer heard"
        answer = caller.agent_audio(since=t_end)
    await asyncio.wait_for(h.done.wait(), 10)
    d = h.dialogs[0]
    roles = [t["role"] for t in d.turns]
    assert roles[:3] == ["agent", "caller", "agent"], d.turns
    assert "saturday" in d.turns[1]["text"].lower()
    timings = d.turns[2]["timings"]
    assert timings.first_frame_ms is not None and timings.speech_end_ms is not None
    assert timings.speech_end_ms <= d.turns[1]["timings"].endpoint_ms <= timings.first_frame_ms
    heard = await asyncio.to_thread(real_engines.stt.transcribe, answer, 16000)
    assert heard.text.strip(), "the agent's answer should be intelligible speech"
    record = await h.store.get_call(d.call_id)
    assert record is not None and [t.role for t in record.turns][:3] == ["agent", "caller", "agent"]


async def test_barge_in_stops_playout_and_keeps_only_what_was_heard(harness, utts) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM([LONG_REPLY, "Okay."], by_turn=True)
    h, srv = await harness(llm, greeting="Hi.")
    async with CallerEmulator("127.0.0.1", srv.port) as caller:
        await caller.wait_agent_done(quiet_s=0.4)
        _, t_end = await caller.say(utts[8].pcm16k)
        while caller.first_voiced_after(t_end) is None:
            await caller.silence(0.1)
        await caller.silence(1.5)  # let the agent talk for a while
        t_barge, _ = await caller.say(utts[3].pcm16k)  # "No, I don't think so."
        await caller.wait_agent_done(since=t_barge + 1.0, quiet_s=0.5, timeout=30)
    await asyncio.wait_for(h.done.wait(), 10)
    d = h.dialogs[0]
    assert any(kind == "barge_in" for _, kind, _ in d.events)
    assert not any(kind == "engine_error" for _, kind, _ in d.events), "a barge-in is not a failure"
    assert d.outcome == "completed"
    agent_turns = [t for t in d.turns if t["role"] == "agent"]
    cut = next(t for t in agent_turns if t.get("interrupted"))
    assert cut["text"].endswith(CUT_MARK)
    heard = cut["text"].rstrip(CUT_MARK).strip()
    assert heard and LONG_REPLY.startswith(heard.rstrip(",.")[: len(heard) - 2])
    assert len(heard) < len(LONG_REPLY) / 2
    # what the LLM sees next holds only the heard part
    second_prompt = " ".join(m.content for m in llm.calls[1])
    assert "public holidays" not in second_prompt and heard[:20] in second_prompt
    # at the wire: the agent's voice stopped soon after the caller started talking over it
    last_before = caller.last_voiced_before(t_barge + 1.5)
    assert last_before is not None and last_before - t_barge < 1.0


async def test_false_alarm_barge_in_resumes_where_the_agent_was_cut(real_engines, utts) -> None:  # type: ignore[no-untyped-def]
    """Speech over the agent stops it; when STT then finds no words in it (a cough: injected by
    the WordlessAfterFirstSTT fake) the agent picks up the unheard rest instead of asking again."""
    engines = Engines(real_engines.vad, WordlessAfterFirstSTT(real_engines.stt), ScriptedLLM([LONG_REPLY]),
                      real_engines.tts, real_engines.config)
    # (words_ahead_s=0: the fault counts transcriptions, and the words heard ahead of the pause would be the first)
    async with _agent(engines, AgentConfig(greeting="Hi.", words_ahead_s=0.0)) as (port, dialogs):
        async with CallerEmulator("127.0.0.1", port) as caller:
            await caller.wait_agent_done(quiet_s=0.4)
            _, t_end = await caller.say(utts[8].pcm16k)
            while caller.first_voiced_after(t_end) is None:
                await caller.silence(0.1)
            await caller.silence(1.5)
            t_barge, _ = await caller.say(utts[3].pcm16k)
            await caller.wait_agent_done(since=t_barge + 1.0, quiet_s=0.8, timeout=40)
    d = dialogs[0]
    kinds = [k for _, k, _ in d.events]
    assert "barge_in" in kinds and "false_alarm_resume" in kinds and "unclear" not in kinds, kinds
    resumed = [t["text"] for t in d.turns if t["role"] == "agent" and t["text"].startswith("Sorry, as I was saying")]
    assert resumed and "public holidays" in resumed[0], d.turns


class _WatchedTTS(TTS):
    """The real Piper voice, noting how far the LLM got while each clause was synthesised."""

    def __init__(self, real: TTS, llm: ScriptedLLM) -> None:
        self.real, self.llm, self.info = real, llm, real.info
        self.seen: list[tuple[str, int, int]] = []  # clause, LLM tokens at start, at first audio

    def synthesize(self, text: str, sample_rate: int, *, cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        start = self.llm.produced
        for i, chunk in enumerate(self.real.synthesize(text, sample_rate, cancel=cancel)):
            if i == 0:
                self.seen.append((text, start, self.llm.produced))
            yield chunk


class _PriorityEngines(Engines):
    """The real engines, noting the scheduler priority each TTS request asked for."""

    asked: list[tuple[str, Priority]]

    async def speak(self, text: str, sample_rate: int, *, cancel: CancelToken, priority: Priority = Priority.TURN) -> AsyncGenerator[AudioChunk, None]:
        self.asked.append((text, priority))
        async for chunk in super().speak(text, sample_rate, cancel=cancel, priority=priority):
            yield chunk


@pytest.mark.parametrize("hold", [True, False])
async def test_llm_waits_while_the_first_clause_is_synthesised_on_cpu(real_engines, utts, hold) -> None:  # type: ignore[no-untyped-def]
    """On a CPU box the LLM and TTS compete for cores: the first clause gets them alone."""
    llm = ScriptedLLM([LONG_REPLY], token_s=0.005)
    tts = _WatchedTTS(real_engines.tts, llm)
    engines = _PriorityEngines(real_engines.vad, real_engines.stt, llm, tts, real_engines.config)
    engines.asked = []
    async with _agent(engines, AgentConfig(greeting="Hi.", hold_llm_for_first_audio=hold)) as (port, dialogs):
        async with CallerEmulator("127.0.0.1", port) as caller:
            await caller.wait_agent_done(quiet_s=0.4)
            _, t_end = await caller.say(utts[8].pcm16k)
            assert await caller.wait_agent_done(since=t_end, quiet_s=1.0, timeout=60)
    replies = [(text, start, first) for text, start, first in tts.seen if text.strip() in LONG_REPLY]
    assert len(replies) >= 3, tts.seen
    text, start, first = replies[0]
    if hold:
        assert first - start <= 1, f"the LLM ran on while '{text}' was synthesised: {start} -> {first}"
    else:
        assert first - start > 1, f"without the hold the LLM keeps decoding: {start} -> {first}"
    assert llm.produced >= len(LONG_REPLY.split(" "))  # either way the whole reply is generated
    assert any(t["role"] == "agent" and "public holidays" in t["text"] for t in dialogs[0].turns)
    # the first clause jumps other calls' queued clauses; the rest have its audio as slack
    asked = [p for text, p in engines.asked if text.strip() in LONG_REPLY]
    assert asked[0] == Priority.TURN and set(asked[1:]) == {Priority.NORMAL}, engines.asked


async def test_a_pause_mid_sentence_throws_the_speculative_reply_away(real_engines, utts) -> None:  # type: ignore[no-untyped-def]
    """A 0.35 s pause is past the speculative start (0.064 s) but short of the endpoint (0.5 s):
    the reply computed from the first half must never be heard, and the turn is the whole sentence."""
    llm = ScriptedLLM(["We close at one on Saturdays."])
    engines = Engines(real_engines.vad, real_engines.stt, llm, real_engines.tts, real_engines.config)
    first, second = utts[0].pcm16k, utts[8].pcm16k  # "Hi, I'm calling about my bill." / "What time ... Saturday?"
    a, b = voiced_bounds(first, 16000)
    async with _agent(engines, AgentConfig(greeting="Hi.")) as (port, dialogs):
        async with CallerEmulator("127.0.0.1", port) as caller:
            await caller.wait_agent_done(quiet_s=0.4)
            _, t_end = await caller.say(first[int(a * 16000) * 2 : int(b * 16000) * 2])
            await caller.silence(0.35)
            t_again, t_end2 = await caller.say(second)
            assert await caller.wait_agent_done(since=t_end2, quiet_s=1.0, timeout=30), "no answer"
    d = dialogs[0]
    kinds = [k for _, k, _ in d.events]
    assert "speculation_dropped" in kinds, kinds  # the pause did start a speculative reply...
    heard_at = caller.first_voiced_after(t_end)
    assert heard_at is not None and heard_at > t_end2, "...and none of it was played"
    caller_turns = [t["text"].lower() for t in d.turns if t["role"] == "caller"]
    # Both halves in one turn. (Not "saturday" nor "bill": whisper tiny.en hears these words of
    # these clips differently by CPU and by the leading audio, "can you get" for "Saturday" on an
    # AVX2-only AMD EPYC, "my real" for "my bill" after a full 0.3 s of pre-roll on a Xeon.)
    assert len(caller_turns) == 1 and "calling about" in caller_turns[0] and "what time do you" in caller_turns[0], caller_turns
    assert [t["text"] for t in d.turns if t["role"] == "agent"] == ["Hi.", "We close at one on Saturdays."]
    asked = llm.calls[-1][-1].content.lower()
    assert "calling about" in asked and "what time do you" in asked


@pytest.mark.parametrize("words", [True, False])
async def test_a_caller_who_stops_on_to_is_waited_for(real_engines, words: bool) -> None:  # type: ignore[no-untyped-def]
    """ "I want to", 0.9 s of silence (past the 0.5 s endpoint), "move my appointment to Friday.":
    whisper hears the first part end on "to", so the turn waits for the rest and is the whole
    sentence. With the check off, the same call is cut at the pause (the test can fail)."""
    llm = ScriptedLLM(["Friday it is.", "Friday it is."])
    engines = Engines(real_engines.vad, real_engines.stt, llm, real_engines.tts, real_engines.config)
    parts = []
    for text in ("I want to", "move my appointment to Friday."):
        pcm = say(text).pcm16k
        a, b = voiced_bounds(pcm, 16000)
        parts.append(pcm[int(a * 16000) * 2 : int(b * 16000) * 2])
    async with _agent(engines, AgentConfig(greeting="Hi.", unfinished_words=words)) as (port, dialogs):
        async with CallerEmulator("127.0.0.1", port) as caller:
            await caller.wait_agent_done(quiet_s=0.4)
            _, t_end = await caller.say(parts[0])
            await caller.silence(0.9)
            _, t_end2 = await caller.say(parts[1])
            assert await caller.wait_agent_done(since=t_end2, quiet_s=1.0, timeout=30), "no answer"
    d = dialogs[0]
    caller_turns = [t["text"].lower() for t in d.turns if t["role"] == "caller"]
    if words:
        assert len(caller_turns) == 1 and "want to" in caller_turns[0] and "appointment" in caller_turns[0], caller_turns
        heard_at = caller.first_voiced_after(t_end)
        assert heard_at is not None and heard_at > t_end2, "the agent spoke into the pause"
    else:
        assert len(caller_turns) == 2 and caller_turns[0].startswith("i want to"), caller_turns
