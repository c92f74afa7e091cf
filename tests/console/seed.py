"""Calls for the console tests, written through the real store (SQLite file) with a real WAV
recording: a transferred call with a cut-off reply and a tool call, a plain one the day
before, and an outbound call a machine answered."""

from __future__ import annotations

import math
import struct
import uuid
import wave
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from db import CallStore, TurnTimings

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
TOKEN = "correct-horse-battery-staple"


@dataclass
class Seeded:
    url: str
    transferred: str
    plain: str
    machine: str
    recording: Path


def tone_wav(path: Path, seconds: float = 6.0, rate: int = 8000) -> Path:
    frames = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def seed(tmp: Path) -> Seeded:
    url, recording = f"sqlite:///{tmp}/calls.db", tone_wav(tmp / "call.wav")
    ids = [str(uuid.UUID(int=i + 1)) for i in range(3)]
    with CallStore(url, clock=lambda: NOW) as s:
        t = NOW - timedelta(hours=2)
        s.start_call(ids[0], direction="inbound", caller="+15550100", callee="200", agent="support", started_at=t)
        s.add_turn(ids[0], "agent", "Hello, thanks for calling.", timings=TurnTimings(first_frame_ms=300.0))
        s.add_turn(ids[0], "caller", "Where is my order four four seven one?", stt_confidence=0.91,
                   timings=TurnTimings(speech_end_ms=2400.0, endpoint_ms=2900.0, stt_done_ms=3000.0))
        s.add_event(ids[0], 3100.0, "tool_call", {"name": "order_status", "ok": True, "ms": 180.0, "args": {"order": "4471"}})
        s.add_turn(ids[0], "agent", "Order 4471 left the depot this", interrupted=True,
                   full_text="Order 4471 left the depot this morning and arrives tomorrow.",
                   timings=TurnTimings(speech_end_ms=2400.0, endpoint_ms=2900.0, stt_done_ms=3000.0, llm_first_token_ms=3350.0,
                                       tts_first_audio_ms=3500.0, first_frame_ms=3520.0, barge_in_ms=4200.0))
        s.add_event(ids[0], 4200.0, "barge_in", {"heard": "Order 4471 left the depot this"})
        s.add_turn(ids[0], "caller", "Can I talk to a person?", timings=TurnTimings(speech_end_ms=5200.0))
        s.set_recording(ids[0], str(recording), 6.0)
        s.finish_call(ids[0], ended_at=t + timedelta(seconds=40), end_reason="agent_hangup", outcome="transferred",
                      summary="Caller +15550100 asks about order 4471 (left the depot) and wants a person.",
                      disposition="the caller asked for a person", transfer_target="PJSIP/200")
        y = NOW - timedelta(days=1, hours=3)
        s.start_call(ids[1], direction="inbound", caller="+15550199", agent="front-desk", started_at=y)
        s.add_turn(ids[1], "caller", "What time do you close on Saturday?", timings=TurnTimings(speech_end_ms=1500.0))
        s.add_turn(ids[1], "agent", "We close at five on Saturdays.",
                   timings=TurnTimings(speech_end_ms=1500.0, endpoint_ms=2000.0, first_frame_ms=2600.0))
        s.finish_call(ids[1], ended_at=y + timedelta(seconds=20), end_reason="caller_hangup", outcome="completed")
        m = NOW - timedelta(minutes=30)
        s.start_call(ids[2], direction="outbound", caller="+15550123", callee="+15550123", agent="reminders", started_at=m)
        s.finish_call(ids[2], ended_at=m + timedelta(seconds=25), end_reason="agent_hangup", outcome="machine_message_left",
                      amd_result="machine_message_left")
    return Seeded(url, ids[0], ids[1], ids[2], recording)
