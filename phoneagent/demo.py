"""`phoneagent demo`: one real SIP call through the bundled Asterisk 22 to the agent.

SIPp dials the `phoneagent-test` context over UDP with G.711 mu-law; Asterisk answers, runs the
user-facing `agent-direct` dialplan (Dial(AudioSocket/...c(slin16))) and the agent answers on
AudioSocket. The caller sends a 1 kHz tone and two RFC 2833 digits; the report shows what the
agent received and what it played back.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import wave

from audiosocket.pcm import dominant_frequency, rms_dbfs, tone, tone_segments
from audiosocket.server import AudioSocketServer
from phoneagent import sipcall, testbed
from phoneagent.echo_agent import EchoAgent


async def run_demo(port: int = 0, as_json: bool = False) -> int:
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
    caller_heard = await asyncio.to_thread(_heard_by_caller, bed, rec_name)
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


def _heard_by_caller(bed: testbed.AsteriskBed, rec_name: str, timeout: float = 5.0) -> list[str]:
    """Tones on the caller's SIP leg (Asterisk MixMonitor recording), as 'Hz@start-end ms'."""
    path = bed.host_path(f"{testbed.RECORDING_DIR}/{rec_name}-heard.wav")
    both = bed.host_path(f"{testbed.RECORDING_DIR}/{rec_name}-both.wav")
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not path.exists():
        return []
    time.sleep(0.2)  # MixMonitor finalises the header as the channel goes away
    with wave.open(str(path), "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    path.unlink(missing_ok=True)
    both.unlink(missing_ok=True)
    return [f"{hz:g}@{a:.0f}-{b:.0f}" for a, b, hz in tone_segments(pcm, rate) if b - a >= 80]
