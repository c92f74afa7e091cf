"""The test caller's ear: what a caller heard of the agent, as words (whisper over the audio as
it reached the caller's side of the line; never the agent's own record of what it said)."""

from __future__ import annotations

import asyncio
import functools

from media.pcm import talk_spurts
from models.base import STT


async def heard_words(stt: STT, pcm: bytes, rate: int) -> str:
    """Each talk spurt transcribed on its own, joined with " | ": without timestamps whisper can
    stop at a pause and drop the rest. `repeats`: read-backs ("4 5 7 2") are repetitive by
    nature, and with the repetition penalty tiny.en sometimes ended the whole answer there."""
    spurts = [(int(a * rate) * 2, int(b * rate) * 2) for a, b in talk_spurts(pcm, rate, gap_s=0.35, min_dbfs=-45)
              if b - a >= 0.2 - 1e-9]
    parts = [(await asyncio.to_thread(functools.partial(stt.transcribe, pcm[a:b], rate, repeats=True))).text for a, b in spurts]
    return " | ".join(p.strip() for p in parts if p.strip())
