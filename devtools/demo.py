"""`python -m devtools demo`: one real SIP call through the bundled Asterisk 22 to the agent.

SIPp dials the `phoneagent-test` context over UDP with G.711 mu-law; Asterisk answers, runs the
user-facing `agent-direct` dialplan (Dial(AudioSocket/...c(slin16))) and the agent answers on
AudioSocket. An Asterisk MixMonitor on the SIP leg records what the caller heard.
- `--agent dialog` (default): the real agent with the bundled models (silero, whisper tiny.en,
  gemma 270M, Piper). The caller asks a question (espeak-ng speech, not our own TTS); the report
  shows the transcript, per-turn latency and what the caller heard, transcribed by whisper.
- `--agent echo`: the media-path check (a tone, RFC 2833 digits, an echo).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
import wave

from media.pcm import dominant_frequency, resample, rms_dbfs, talk_spurts, tone, tone_segments
from audiosocket.server import AudioSocketServer
from devtools import sipcall, testbed
from phoneagent.echo_agent import EchoAgent



async def run_demo(port: int = 0, as_json: bool = False, agent: str = "dialog", llm: str = "") -> int:
    if agent == "dialog":
        return await run_dialog_demo(as_json=as_json, llm=llm)
    return await run_echo_demo(port, as_json)


async def run_echo_demo(port: int = 0, as_json: bool = False) -> int:
    bed = testbed.ensure()
    agent = EchoAgent()
    server = AudioSocketServer(agent, "127.0.0.1", port)
    await server.start()
    try:
        script: list[sipcall.Step] = [
            sipcall.Pause(600),  # let the greeting play
            sipcall.Audio(tone(1000.0, 1000, 8000, amplitude=0.25)),
            sipcall.Digit("4"),
            sipcall.Digit("2"),
            sipcall.Pause(800),
        ]
        t0 = time.monotonic()
        rec_name = f"demo-{uuid.uuid4().hex[:12]}"
        result = await asyncio.to_thread(
            sipcall.place_call, bed.sip_host, bed.sip_port, f"agent-port-{server.port}", script,
            headers={"X-Phoneagent-Rec": rec_name},
        )
        # Asterisk closes the AudioSocket after the BYE; give the session a moment to finish.
        deadline = time.monotonic() + 5
        while (server.sessions or not agent.reports) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
    finally:
        await server.close()
    if not agent.reports:
        print(f"FAILED: the call never reached the agent. SIPp rc={result.returncode}\n{result.errors}\n{result.stderr}")
        return 1
    r = agent.reports[-1]
    heard = bytes(r.caller_audio)
    rate_pcm = await asyncio.to_thread(_heard_by_caller, bed, rec_name)
    caller_heard = [f"{hz:g}@{a:.0f}-{b:.0f}" for a, b, hz in tone_segments(rate_pcm[1], rate_pcm[0]) if b - a >= 80] if rate_pcm else []
    summary = {
        "asterisk": bed.health().version,
        "sip_call_ok": result.ok,
        "call_seconds": round(elapsed, 2),
        "media": f"slin {r.sample_rate} Hz, {r.frame_ms:g} ms frames",
        "frames_from_caller": r.frames_in,
        "caller_tone_hz": round(dominant_frequency(heard, r.sample_rate), 1) if len(heard) > 64 else None,
        "caller_level_dbfs": round(rms_dbfs(heard), 1) if heard else None,
        "dtmf_digits": "".join(r.digits),
        "greeting_played_ms": r.greeting_played_ms,
        "end_reason": r.end_reason,
        "caller_heard_hz": caller_heard,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print("phoneagent demo: one SIP call (G.711 mu-law + RFC 2833) through Asterisk to the agent")
        for k, v in summary.items():
            print(f"  {k:22} {v}")
    ok = result.ok and r.frames_in > 0 and r.digits == ["4", "2"] and bool(caller_heard)
    print("RESULT:", "call answered by the agent, audio and digits received" if ok else "FAILED")
    return 0 if ok else 1


def _heard_by_caller(bed: testbed.AsteriskBed, rec_name: str, timeout: float = 5.0) -> tuple[int, bytes] | None:
    """(rate, slin) of what the caller heard on the SIP leg (Asterisk MixMonitor recording)."""
    path = bed.host_path(f"{testbed.RECORDING_DIR}/{rec_name}-heard.wav")
    both = bed.host_path(f"{testbed.RECORDING_DIR}/{rec_name}-both.wav")
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not path.exists():
        return None
    time.sleep(0.3)  # MixMonitor finalises the header as the channel goes away
    with wave.open(str(path), "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    for f in (path, both, bed.host_path(f"{testbed.RECORDING_DIR}/{rec_name}-said.wav")):
        f.unlink(missing_ok=True)
    return rate, pcm


QUESTION = 8  # devtools/utterances.py: "What time do you close on Saturday?"


async def run_dialog_demo(as_json: bool = False, llm: str = "") -> int:
    """The agent with the bundled models answers a spoken question on a real SIP call. The agent
    runs exactly as `phoneagent serve` runs it (phoneagent.service.running: preflighted engines,
    composition root, call store); the report reads the call back from the store."""
    from devtools.utterances import synthesize_set
    from models import catalog, preflight
    from models.engines import EngineConfig
    from models.whisper import WhisperSTT
    from phoneagent.service import running

    bed = testbed.ensure()
    cfg = EngineConfig(llm=llm) if llm else EngineConfig()
    await asyncio.to_thread(preflight.ensure, preflight.checks_for(cfg))
    question = synthesize_set()[QUESTION]
    rec_name = f"demo-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp:
        async with running("127.0.0.1", 0, agent="dialog", db_url=f"sqlite:///{tmp}/demo.db", engine_config=cfg) as svc:
            script: list[sipcall.Step] = [
                sipcall.Pause(4000),  # the greeting
                sipcall.Audio(resample(question.pcm16k, 16000, 8000)),
                sipcall.Pause(12000),  # the answer (the base model rambles up to max_reply_tokens)
            ]
            t0 = time.monotonic()
            result = await asyncio.to_thread(
                sipcall.place_call, bed.sip_host, bed.sip_port, f"agent-port-{svc.server.port}", script,
                headers={"X-Phoneagent-Rec": rec_name},
            )
            deadline = time.monotonic() + 5
            while svc.server.sessions and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - t0
            calls = await svc.store.list_calls(limit=1)
            call = await svc.store.get_call(calls[0].id) if calls else None
    heard = await asyncio.to_thread(_heard_by_caller, bed, rec_name)
    heard_text = ""
    if heard is not None:  # whisper each talk spurt: without timestamps it stops at long gaps
        stt = WhisperSTT(catalog.whisper_tiny_en(), device="cpu")  # the demo's ear, not the agent's
        rate = heard[0]
        spurts = [(int(a * rate) * 2, int(b * rate) * 2) for a, b in talk_spurts(heard[1], rate, gap_s=0.78, min_dbfs=-45) if b - a >= 0.2 - 1e-9]
        parts = [(await asyncio.to_thread(stt.transcribe, heard[1][a:b], rate)).text for a, b in spurts]
        heard_text = " | ".join(p.strip() for p in parts if p.strip())
    if call is None:
        print(f"FAILED: the call never reached the agent. SIPp rc={result.returncode}\n{result.errors}\n{result.stderr}")
        return 1
    turns = []
    for t in call.turns:
        tm = t.timings
        v2v = None
        if t.role == "agent" and tm.first_frame_ms is not None and tm.speech_end_ms is not None:
            v2v = round(tm.first_frame_ms - tm.speech_end_ms)
        turns.append({"role": t.role, "text": t.text, "voice_to_voice_ms": v2v})
    callers = [t for t in turns if t["role"] == "caller"]
    summary = {
        "asterisk": bed.health().version,
        "sip_call_ok": result.ok,
        "call_seconds": round(elapsed, 2),
        "engines": f"vad={cfg.vad}, stt={cfg.stt}, llm={cfg.llm}, tts={cfg.tts} (device {cfg.device})",
        "turns": turns,
        "v2v_ms (server wire)": [t["voice_to_voice_ms"] for t in turns if t["voice_to_voice_ms"] is not None],
        "caller_heard (whisper)": heard_text,
        "outcome": call.outcome,
        "stored call": f"{call.id}: {call.end_reason}, {len(call.turns)} turns, {len(call.events)} events",
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print("phoneagent demo: a SIP caller (G.711) asks a question through Asterisk; the agent answers")
        for k, v in summary.items():
            if k == "turns":
                for turn in turns:
                    lat = f"  [{turn['voice_to_voice_ms']} ms after the caller stopped]" if turn["voice_to_voice_ms"] is not None else ""
                    print(f"  {turn['role']:>6}: {turn['text']}{lat}")
            else:
                print(f"  {k:22} {v}")
    ok = result.ok and bool(callers) and bool(heard_text.strip()) and len([t for t in turns if t["role"] == "agent"]) >= 2
    print("RESULT:", "the agent answered a spoken question on a real call" if ok else "FAILED")
    return 0 if ok else 1

