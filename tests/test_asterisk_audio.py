"""The media core through the real Asterisk 22: Local channels and a real SIP caller (SIPp).

(a) a tone Asterisk plays reaches our server at slin16 with the right frequency;
(b) a tone our server plays is recorded on the Asterisk side with the right frequency;
(c) a SIP call with G.711 audio and RFC 2833 DTMF reaches the server, digits arrive as 0x03;
(d) a hangup from either side ends the session and leaves no channel behind;
(e) 20 concurrent calls each get their own session with clean audio, both directions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from audiosocket import protocol as p
from media.pcm import dominant_frequency, rms_dbfs, to_array, tone, tone_segments
from audiosocket.server import AudioSocketServer, CallEnded, CallSession, EndReason
from devtools import sipcall, testbed, testbed_ari

pytestmark = pytest.mark.asterisk


def purity(pcm: bytes, rate: int, freq: float, band: float = 40.0) -> float:
    """Fraction of the signal's energy within +-band Hz of freq: 1.0 is a perfectly clean tone."""
    x = to_array(pcm).astype(np.float64)
    x = (x - x.mean()) * np.hanning(x.size)
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / rate)
    total = spec.sum()
    return float(spec[np.abs(freqs - freq) <= band].sum() / total) if total > 0 else 0.0


@dataclass
class Seen:
    rate: int = 0
    frame_bytes: set[int] = field(default_factory=set)
    audio: bytearray = field(default_factory=bytearray)
    digits: list[str] = field(default_factory=list)
    ended: CallEnded | None = None
    dropped_in: int = 0
    late_resets: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Agent:
    """Test handler: records inbound audio/digits per call and plays `reply[uuid]` if given.

    With `hangup_after_play`, it ends the call itself once its reply has been played.
    """

    def __init__(self) -> None:
        self.calls: dict[uuid.UUID, Seen] = {}
        self.reply: dict[uuid.UUID, bytes] = {}
        self.reply_all: bytes | None = None
        self.hangup_after_play = False
        self.connected = asyncio.Condition()

    async def __call__(self, session: CallSession) -> None:
        seen = self.calls.setdefault(session.call_id, Seen())
        async with self.connected:
            self.connected.notify_all()
        fmt = await session.media_format()
        seen.rate = fmt.sample_rate
        playout = await session.start_playout()
        reply = self.reply.get(session.call_id, self.reply_all)
        play_task = asyncio.ensure_future(playout.play(reply)) if reply else None
        try:
            while True:
                if self.hangup_after_play and play_task is not None and play_task.done():
                    await session.hangup()
                    return
                try:
                    item = await asyncio.wait_for(session.receive(), 0.05)
                except TimeoutError:
                    continue
                if isinstance(item, CallEnded):
                    seen.ended = item
                    return
                if isinstance(item, p.Audio):
                    seen.frame_bytes.add(len(item.pcm))
                    seen.audio += item.pcm
                elif isinstance(item, p.Dtmf):
                    seen.digits.append(item.digit)
        finally:
            if play_task is not None:
                play_task.cancel()
            seen.dropped_in = session.dropped_in
            seen.late_resets = playout.late_resets
            seen.done.set()


@pytest.fixture
async def agent_server() -> AsyncIterator[tuple[Agent, AudioSocketServer]]:
    agent = Agent()
    server = AudioSocketServer(agent, "127.0.0.1", 0)
    await server.start()
    yield agent, server
    await server.close()


async def wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def originate(bed: testbed.AsteriskBed, call_id: uuid.UUID, exten: str, port: int, **variables: str) -> str:
    variables["PHONEAGENT_AUDIOSOCKET"] = f"127.0.0.1:{port}"
    return await asyncio.to_thread(testbed_ari.ari_originate_local, bed, str(call_id), exten, variables)


async def no_channels_left(bed: testbed.AsteriskBed, timeout: float = 10.0) -> None:
    left = await asyncio.to_thread(testbed_ari.ari_wait_no_channels, bed, timeout)
    assert not left, f"channels left behind: {[c.get('name') for c in left]}"


async def test_a_tone_from_asterisk_reaches_server_as_slin16(asterisk_bed, agent_server) -> None:  # type: ignore[no-untyped-def]
    agent, server = agent_server
    call_id = uuid.uuid4()
    chan = await originate(asterisk_bed, call_id, "tone", server.port, TONE="1000")
    await wait_for(lambda: call_id in agent.calls and len(agent.calls[call_id].audio) >= 16000 * 2 * 1.2, 10, "1.2 s of audio")
    seen = agent.calls[call_id]
    assert seen.rate == 16000
    assert seen.frame_bytes == {640}  # 20 ms at 16 kHz, as Asterisk chose; we never assumed it
    steady = bytes(seen.audio[-16000 * 2 :])
    assert dominant_frequency(steady, 16000) == pytest.approx(1000.0, abs=3.0)
    assert purity(steady, 16000, 1000.0) > 0.95
    await asyncio.to_thread(testbed_ari.ari_hangup, asterisk_bed, chan)
    await asyncio.wait_for(seen.done.wait(), 10)
    assert seen.ended is not None and seen.ended.reason == EndReason.CALLER_HANGUP
    await no_channels_left(asterisk_bed)
    await wait_for(lambda: not server.sessions, 5, "the server to drop the ended session")  # just after the handler returns


def read_wav(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return w.getframerate(), w.readframes(w.getnframes())


async def test_b_tone_from_server_is_recorded_by_asterisk(asterisk_bed, agent_server) -> None:  # type: ignore[no-untyped-def]
    agent, server = agent_server
    call_id = uuid.uuid4()
    agent.reply[call_id] = tone(800.0, 1500, 16000, amplitude=0.3)
    agent.hangup_after_play = True
    await originate(asterisk_bed, call_id, "record", server.port, REC_NAME=str(call_id), REC_SECONDS="4", REC_FORMAT="wav16")
    await wait_for(lambda: call_id in agent.calls and agent.calls[call_id].done.is_set(), 15, "the agent to finish")
    await no_channels_left(asterisk_bed)
    path = asterisk_bed.host_path(f"/tmp/phoneagent-rec/{call_id}.wav16")
    await wait_for(path.exists, 5, f"recording {path}")
    rate, pcm = read_wav(path)
    assert rate == 16000
    voiced = pcm[: 16000 * 2 * 2]
    assert dominant_frequency(voiced, 16000) == pytest.approx(800.0, abs=3.0)
    assert purity(voiced, 16000, 800.0) > 0.95
    assert rms_dbfs(voiced) > -20
    path.unlink()


async def test_c_sip_call_with_g711_and_rfc2833_dtmf(asterisk_bed, agent_server) -> None:  # type: ignore[no-untyped-def]
    agent, server = agent_server
    script: list[sipcall.Step] = [
        sipcall.Pause(200),
        sipcall.Audio(tone(1000.0, 1200, 8000, amplitude=0.25)),
        sipcall.Digit("1"),
        sipcall.Digit("9"),
        sipcall.Digit("#"),
        sipcall.Pause(500),
    ]
    rec = f"sipp-{uuid.uuid4().hex[:12]}"
    greeting = tone(440.0, 300, 16000) + tone(660.0, 300, 16000)
    agent.reply_all = greeting
    result = await asyncio.to_thread(
        sipcall.place_call, asterisk_bed.sip_host, asterisk_bed.sip_port, f"agent-port-{server.port}", script,
        headers={"X-Phoneagent-Rec": rec},
    )
    assert result.ok, f"SIPp failed rc={result.returncode}: {result.errors}\n{result.stderr}\n{result.stdout}"
    await wait_for(lambda: len(agent.calls) == 1 and next(iter(agent.calls.values())).done.is_set(), 10, "the call to end")
    seen = next(iter(agent.calls.values()))
    assert seen.digits == ["1", "9", "#"]
    assert seen.rate == 16000
    x = bytes(seen.audio)
    # find the loud part: the tone went through mu-law at 8 kHz and was upsampled by Asterisk
    frames = [x[i : i + 640] for i in range(0, len(x) - 639, 640)]
    loud = b"".join(f for f in frames if rms_dbfs(f) > -30)
    assert len(loud) >= 640 * 40, f"only {len(loud) // 640} voiced frames arrived"
    assert dominant_frequency(loud, 16000) == pytest.approx(1000.0, abs=5.0)
    assert purity(loud, 16000, 1000.0) > 0.9
    assert seen.ended is not None and seen.ended.reason == EndReason.CALLER_HANGUP
    await no_channels_left(asterisk_bed)
    # What the SIP caller heard (Asterisk MixMonitor on the SIP leg): our greeting, in order,
    # after G.711 and Asterisk's 16 kHz -> 8 kHz transcoding.
    heard_path = asterisk_bed.host_path(f"/tmp/phoneagent-rec/{rec}-heard.wav")
    await wait_for(heard_path.exists, 5, "the caller-leg recording")
    await asyncio.sleep(0.2)
    rate, heard = read_wav(heard_path)
    segs = [(a, b, hz) for a, b, hz in tone_segments(heard, rate) if b - a >= 120]
    assert [round(hz / 10) * 10 for _, _, hz in segs[:2]] == [440, 660], segs
    for suffix in ("heard", "both"):
        asterisk_bed.host_path(f"/tmp/phoneagent-rec/{rec}-{suffix}.wav").unlink(missing_ok=True)


async def test_d_hangup_from_asterisk_mid_playout_frees_everything(asterisk_bed, agent_server) -> None:  # type: ignore[no-untyped-def]
    agent, server = agent_server
    call_id = uuid.uuid4()
    agent.reply[call_id] = tone(500.0, 20000, 16000)  # still playing when the caller leaves
    chan = await originate(asterisk_bed, call_id, "silence", server.port)
    await wait_for(lambda: call_id in server.sessions and server.sessions[call_id].playout is not None, 10, "playout")
    await asyncio.sleep(0.5)
    await asyncio.to_thread(testbed_ari.ari_hangup, asterisk_bed, chan)
    seen = agent.calls[call_id]
    await asyncio.wait_for(seen.done.wait(), 10)
    assert seen.ended is not None and seen.ended.reason == EndReason.CALLER_HANGUP
    await wait_for(lambda: not server.sessions, 5, "session cleanup")
    await no_channels_left(asterisk_bed)


async def test_d_hangup_from_server_ends_the_asterisk_channels(asterisk_bed, agent_server) -> None:  # type: ignore[no-untyped-def]
    agent, server = agent_server
    call_id = uuid.uuid4()
    agent.reply[call_id] = tone(600.0, 300, 16000)
    agent.hangup_after_play = True
    await originate(asterisk_bed, call_id, "silence", server.port)
    await wait_for(lambda: call_id in agent.calls and agent.calls[call_id].done.is_set(), 10, "agent hangup")
    await wait_for(lambda: not server.sessions, 5, "session cleanup")
    assert server.finished[-1] == (call_id, EndReason.AGENT_HANGUP)
    await no_channels_left(asterisk_bed)


async def test_e_twenty_concurrent_calls_each_get_their_own_clean_audio(asterisk_bed, agent_server) -> None:  # type: ignore[no-untyped-def]
    agent, server = agent_server
    n = 20
    ids = [uuid.uuid4() for _ in range(n)]
    freq_in = {cid: 400.0 + 60.0 * i for i, cid in enumerate(ids)}  # what Asterisk plays to us
    freq_out = {cid: 1700.0 - 50.0 * i for i, cid in enumerate(ids)}  # what we play to Asterisk
    for cid in ids:
        agent.reply[cid] = tone(freq_out[cid], 2500, 16000, amplitude=0.3)
    t0 = time.monotonic()
    await asyncio.gather(*(
        originate(asterisk_bed, cid, "record", server.port, TONE=str(int(freq_in[cid])), REC_NAME=str(cid), REC_SECONDS="3", REC_FORMAT="wav16")
        for cid in ids
    ))
    await wait_for(lambda: len(agent.calls) == n and all(s.done.is_set() for s in agent.calls.values()), 30, "all calls to end")
    elapsed = time.monotonic() - t0
    await no_channels_left(asterisk_bed, timeout=15)
    await wait_for(lambda: not server.sessions, 5, "session cleanup")
    assert server.calls_total == n
    problems = []
    for cid in ids:
        seen = agent.calls[cid]
        s = dict(server.finished).get(cid)
        heard = bytes(seen.audio[-16000 * 2 :])
        if seen.frame_bytes != {640} or abs(dominant_frequency(heard, 16000) - freq_in[cid]) > 3 or purity(heard, 16000, freq_in[cid]) < 0.9:
            problems.append(f"{cid} inbound: frames={seen.frame_bytes} f={dominant_frequency(heard, 16000):.1f} want {freq_in[cid]}")
        path = asterisk_bed.host_path(f"/tmp/phoneagent-rec/{cid}.wav16")
        _, rec = read_wav(path)
        rec = rec[16000 * 2 // 2 : 16000 * 2 * 2]  # 0.5-2.0 s: inside our 2.5 s tone
        if abs(dominant_frequency(rec, 16000) - freq_out[cid]) > 3 or purity(rec, 16000, freq_out[cid]) < 0.9:
            problems.append(f"{cid} outbound: f={dominant_frequency(rec, 16000):.1f} want {freq_out[cid]} purity={purity(rec, 16000, freq_out[cid]):.2f}")
        path.unlink()
        if s != EndReason.CALLER_HANGUP:  # with the reason's detail (the exception that ended it)
            problems.append(f"{cid} ended with {s}: {seen.ended.detail if seen.ended else 'no CallEnded seen'}")
    frames = [len(agent.calls[c].audio) // 640 for c in ids]
    drops = sum(agent.calls[c].dropped_in for c in ids)
    resets = sum(agent.calls[c].late_resets for c in ids)
    print(f"\n{n} concurrent calls: all ended in {elapsed:.1f} s; inbound frames/call min {min(frames)} max {max(frames)}; "
          f"inbound drops {drops}; playout re-anchors {resets}; problems: {len(problems)}")
    assert drops == 0
    assert not problems, "\n".join(problems)
