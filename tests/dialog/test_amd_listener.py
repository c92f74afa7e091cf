"""AMD's audio front-end on the real engines: who answered an outbound call, from its audio.

espeak-ng speech and synthetic beeps go through a G.711 mu-law line (8 kHz; resampled to 16 kHz
where the call runs wideband) and are fed in 20 or 30 ms chunks as the AudioSocket delivers
them, without real-time pacing: time is media time. After each chunk the test waits for the
STT in flight, so a transcript lands at the media time its STT started (an STT as fast as one
chunk); live, it lands a few hundred ms later. The fakes below each stand in for a behaviour the
real engines cannot produce on demand.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from phoneagent.dialog.amd.rules import AmdDecision
from media.pcm import frame_bytes, frame_levels_dbfs, resample, silence, telephone_channel, tone
from models.base import VAD, EngineError, EngineInfo, Transcript, VADStream
from models.engines import EngineConfig, Engines
from phoneagent.dialog.amd.listener import ListenerTuning, MachineEngines, MachineListener, tone_block

pytestmark = pytest.mark.asyncio(loop_scope="module")

GREETING = "Hi, you've reached Anna Smith. I can't take your call right now. Please leave a message after the tone."
BEEP_GAP_S = 0.4  # silence between the greeting and its beep: shorter than greeting_over's 1 s
CHANNELS = [(8000, 20), (16000, 20), (16000, 30)]  # (sample rate, chunk ms) as Asterisk sends them
IDS = [f"{r // 1000}k-{ms}ms" for r, ms in CHANNELS]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines() -> AsyncIterator[Engines]:
    eng = await asyncio.to_thread(Engines.load, EngineConfig())
    yield eng
    await eng.close()


def speak(text: str, wav: Path) -> bytes:
    """espeak-ng (not our own TTS voice) as slin at 8 kHz."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(wav), text], check=True, capture_output=True)
    with wave.open(str(wav), "rb") as w:
        return resample(w.readframes(w.getnframes()), w.getframerate(), 8000)


def sil(s: float) -> bytes:
    return silence(s * 1000, 8000)


def beep(s: float = 0.5, hz: float = 1000.0) -> bytes:
    return tone(hz, s * 1000, 8000, amplitude=0.3)


@dataclass(frozen=True)
class Audio:
    hello: bytes  # 0.4 s of silence, "Hello?", 3 s of silence
    greeting: bytes  # the voicemail greeting, BEEP_GAP_S, a 0.5 s 1 kHz beep, 1.5 s of silence
    beep_start_s: float  # in `greeting`
    beep_alone: bytes  # 0.5 s of silence, the beep, 2.5 s of silence
    silence: bytes  # 3.5 s


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Audio:
    d = tmp_path_factory.mktemp("espeak")
    words = speak(GREETING, d / "greeting.wav")
    greeting = words + sil(BEEP_GAP_S) + beep() + sil(1.5)
    return Audio(
        hello=sil(0.4) + speak("Hello?", d / "hello.wav") + sil(3.0),
        greeting=greeting,
        beep_start_s=(len(words) + len(sil(BEEP_GAP_S))) / 2 / 8000,
        beep_alone=sil(0.5) + beep() + sil(2.5),
        silence=sil(3.5),
    )


def line(pcm8k: bytes, rate: int) -> bytes:
    """What the callee's audio looks like at the AudioSocket: G.711 mu-law, then the call's rate."""
    return resample(telephone_channel(pcm8k, 8000, "ulaw"), 8000, rate)


@dataclass
class Run:
    listener: MachineListener
    decision: AmdDecision | None = None
    reported_at: float | None = None  # media time of the feed() that returned the decision
    over_at: float | None = None  # media time greeting_over() first said True


async def listen(engines: MachineEngines, pcm8k: bytes, rate: int, chunk_ms: int) -> Run:
    """Feed one call's audio chunk by chunk; the decision must come once, by 3 s."""
    listener = MachineListener(engines, rate)
    run = Run(listener)
    pcm, n = line(pcm8k, rate), frame_bytes(rate, chunk_ms)
    try:
        for i in range(0, len(pcm), n):
            found = await listener.feed(pcm[i : i + n])
            await listener.wait_stt()
            if found is not None:
                assert run.decision is None, "decided twice"
                run.decision, run.reported_at = found, listener.media_s
            if run.over_at is None and listener.greeting_over():
                run.over_at = listener.media_s
    finally:
        await listener.close()
    assert run.decision is not None and run.reported_at is not None
    assert run.decision.at_s <= 3.0 and run.reported_at <= 3.0 + 1e-9, run.decision
    assert run.decision == listener.decision
    return run


# --- the fakes ---


class FailingSTTEngines:
    """Fake engines: the real VAD, and an STT that raises the way a crashed engine does."""

    def __init__(self, real: Engines) -> None:
        self.vad = real.vad
        self.calls = 0

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        self.calls += 1
        raise EngineError("whisper: simulated crash")


class PerfectSTTEngines:
    """Fake engines: the real VAD, and an STT that hears the greeting perfectly (whisper tiny
    mishears espeak's "you've reached" as "you reach"), to show a phrase deciding early."""

    def __init__(self, real: Engines, text: str) -> None:
        self.vad = real.vad
        self.text = text
        self.heard_s: list[float] = []

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        self.heard_s.append(len(pcm) / 2 / sample_rate)
        return Transcript(self.text, self.text, 0.9, 0.0, "en", len(pcm) / 2 / sample_rate, 0.01)


class LoudIsSpeechVAD(VAD):
    """Fake VAD that calls every loud window speech: stands in for a VAD that mistakes a
    voicemail beep for a voice (silero does not on these beeps, but other recordings may)."""

    def __init__(self) -> None:
        self.info = EngineInfo("vad", "loud-is-speech-fake", "-", "cpu", sample_rates=(8000, 16000))

    def stream(self, sample_rate: int) -> VADStream:
        return _LoudStream(sample_rate)


class _LoudStream(VADStream):
    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.window_samples = 256 if sample_rate == 8000 else 512
        self._buf = b""

    def process(self, pcm: bytes) -> list[float]:
        self._buf += pcm
        n = self.window_samples * 2
        whole, self._buf = self._buf[: len(self._buf) // n * n], self._buf[len(self._buf) // n * n :]
        levels = frame_levels_dbfs(whole, self.sample_rate, self.window_ms)
        return [0.95 if level > -45.0 else 0.0 for level in levels]

    def reset(self) -> None:
        self._buf = b""


class FakeVADEngines:
    """Fake engines: the LoudIsSpeechVAD fake, and the real STT."""

    def __init__(self, real: Engines) -> None:
        self.vad: VAD = LoudIsSpeechVAD()
        self.real = real

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        return await self.real.transcribe(pcm, sample_rate)


# --- the cases ---


@pytest.mark.parametrize(("rate", "chunk_ms"), CHANNELS, ids=IDS)
async def test_a_human_says_hello_then_waits(engines: Engines, audio: Audio, rate: int, chunk_ms: int) -> None:
    run = await listen(engines, audio.hello, rate, chunk_ms)
    assert run.decision is not None and run.decision.kind == "human", run.decision
    assert run.decision.reason == "short greeting then silence"
    (start, end), = run.listener.segments
    assert 0.35 <= start <= 0.55 and end - start < 1.0
    assert run.decision.at_s == pytest.approx(end + 0.7)  # AmdConfig.silence_after_greeting_s
    assert "hello" in run.listener.transcript.lower()
    assert run.over_at is None, "a human's greeting is never 'over' for a voicemail message"


@pytest.mark.parametrize(("rate", "chunk_ms"), CHANNELS, ids=IDS)
async def test_a_voicemail_greeting_is_a_machine_and_is_over_after_its_beep(engines: Engines, audio: Audio, rate: int, chunk_ms: int) -> None:
    run = await listen(engines, audio.greeting, rate, chunk_ms)
    assert run.decision is not None and run.decision.kind == "machine", run.decision
    assert run.decision.reason in ("long greeting", "total speech") or run.decision.reason.startswith("phrase"), run.decision
    assert run.decision.at_s < 2.5
    seen, ended = run.listener.beep_seen_at, run.listener.beep_ended_at
    assert seen is not None and ended is not None, "the beep after the decision was missed"
    assert audio.beep_start_s + 0.15 - 0.04 <= seen <= audio.beep_start_s + 0.25
    assert ended == pytest.approx(audio.beep_start_s + 0.5, abs=0.05)
    # the greeting is over when the beep stops: not at a sentence pause, not mid-beep
    assert run.over_at is not None and ended <= run.over_at <= ended + 0.04 + chunk_ms / 1000  # one block, one chunk
    assert all(end < audio.beep_start_s for _, end in run.listener.segments), "the beep is not speech"


@pytest.mark.parametrize(("rate", "chunk_ms"), CHANNELS, ids=IDS)
async def test_a_beep_alone_is_a_machine(engines: Engines, audio: Audio, rate: int, chunk_ms: int) -> None:
    run = await listen(engines, audio.beep_alone, rate, chunk_ms)
    assert run.decision is not None and (run.decision.kind, run.decision.reason) == ("machine", "beep")
    assert 0.5 + 0.15 - 0.04 <= run.decision.at_s <= 0.5 + 0.25  # blocks of 40 ms: the first may be partly silent
    assert run.listener.segments == [] and run.listener.transcript == ""
    ended = run.listener.beep_ended_at
    assert ended is not None and ended == pytest.approx(1.0, abs=0.02)
    assert run.over_at is not None and ended <= run.over_at <= ended + 0.04 + chunk_ms / 1000  # one block, one chunk


@pytest.mark.parametrize(("rate", "chunk_ms"), CHANNELS, ids=IDS)
async def test_silence_is_unknown_at_three_seconds(engines: Engines, audio: Audio, rate: int, chunk_ms: int) -> None:
    run = await listen(engines, audio.silence, rate, chunk_ms)
    assert run.decision == AmdDecision("unknown", "silence", 3.0)
    assert run.reported_at == pytest.approx(3.0)
    assert run.listener.segments == [] and not run.over_at


@pytest.mark.parametrize(("rate", "chunk_ms"), CHANNELS, ids=IDS)
async def test_a_failing_stt_leaves_the_timing_rules_to_decide(
    engines: Engines, audio: Audio, rate: int, chunk_ms: int, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FailingSTTEngines(engines)
    with caplog.at_level(logging.WARNING, logger="phoneagent.dialog.amd.listener"):
        machine = await listen(fake, audio.greeting, rate, chunk_ms)
        human = await listen(fake, audio.hello, rate, chunk_ms)
    assert machine.decision is not None and (machine.decision.kind, machine.decision.reason) == ("machine", "long greeting")
    assert human.decision is not None and (human.decision.kind, human.decision.reason) == ("human", "short greeting then silence")
    assert fake.calls >= 2 and machine.listener.stt_failures >= 1 and human.listener.stt_failures == 1
    assert machine.listener.transcript == human.listener.transcript == ""
    assert "STT failed" in caplog.text and "simulated crash" in caplog.text


async def test_a_voicemail_phrase_decides_before_the_long_greeting_rule(engines: Engines, audio: Audio) -> None:
    fake = PerfectSTTEngines(engines, "Hi, you've reached Anna Smith.")
    run = await listen(fake, audio.greeting, 8000, 20)
    assert run.decision is not None and run.decision.reason == "phrase: you've reached", run.decision
    # the first STT runs once ListenerTuning.stt_after_speech_s of speech has been heard
    first_start = run.listener.segments[0][0]
    assert run.decision.at_s == pytest.approx(first_start + 1.2, abs=0.07)
    assert len(fake.heard_s) == 1 and run.listener.transcript == fake.text


async def test_a_beep_the_vad_calls_speech_is_still_not_speech(engines: Engines, audio: Audio) -> None:
    fake = FakeVADEngines(engines)
    run = await listen(fake, audio.beep_alone, 8000, 20)
    assert run.decision is not None and run.decision.reason == "beep"
    assert run.listener.segments == []
    # the same fake VAD still reports a voice as speech: only the tone was masked
    hello = await listen(fake, audio.hello, 8000, 20)
    assert len(hello.listener.segments) == 1 and hello.decision is not None and hello.decision.kind == "human"


async def test_poll_with_the_callers_clock_decides_when_no_audio_comes(engines: Engines, audio: Audio) -> None:
    listener = MachineListener(engines, 8000)
    try:
        assert await listener.feed(line(sil(1.0), 8000)) is None
        assert listener.poll() is None and listener.poll(2.5) is None
        assert listener.poll(3.01) == AmdDecision("unknown", "silence", 3.0)
        assert listener.poll(3.5) is None, "reported once"
        assert listener.decision == AmdDecision("unknown", "silence", 3.0)
    finally:
        await listener.close()


async def test_tone_block_tells_a_beep_from_a_voice(audio: Audio) -> None:
    n = frame_bytes(8000, 40)
    pcm = line(audio.greeting, 8000)
    blocks = [tone_block(pcm[i : i + n], 8000, (400.0, 2600.0), min_dbfs=-35.0, min_purity=0.9) for i in range(0, len(pcm) - n + 1, n)]
    tonal = [i * 0.04 for i, hz in enumerate(blocks) if hz is not None]
    assert tonal and all(audio.beep_start_s - 0.04 <= t < audio.beep_start_s + 0.5 for t in tonal)
    assert all(hz is None or abs(hz - 1000.0) < 5.0 for hz in blocks)
    assert tone_block(line(beep(0.04, 3000.0), 8000), 8000, (400.0, 2600.0), min_dbfs=-35.0, min_purity=0.9) is None


async def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="release_threshold"):
        ListenerTuning(release_threshold=0.6)
    with pytest.raises(ValueError, match="beep_purity"):
        ListenerTuning(beep_purity=0.0)


async def test_a_rate_the_vad_cannot_take_is_refused(engines: Engines) -> None:
    with pytest.raises(ValueError, match="resample first"):
        MachineListener(engines, 44100)
    with pytest.raises(ValueError, match="beep_hz"):
        MachineListener(engines, 8000, beep_hz=(400.0, 5000.0))
