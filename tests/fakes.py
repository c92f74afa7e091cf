"""Fakes, each standing in for a behaviour the real part cannot produce on demand.

The bundled LLM is a 270M BASE model: it cannot follow a script, fail, or hang when a test
needs it to. These LLMs inject exactly that; every other engine in those tests is real. The STT
wrapper at the end injects "heard no words" on cue, around the real whisper.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence

from models.base import LLM, STT, CancelToken, EngineError, EngineInfo, GenerationStats, Message, Token, ToolCall, ToolSpec, Transcript


class ScriptedLLM(LLM):
    """Replies with the next scripted text, token by token (a word each), `token_s` apart."""

    def __init__(self, replies: Sequence[str], token_s: float = 0.02) -> None:
        self.replies = list(replies)
        self.token_s = token_s
        self.calls: list[list[Message]] = []
        self.produced = 0  # tokens generated so far, all replies (read from other threads)
        self.info = EngineInfo("llm", "scripted-fake", "-", "cpu", streaming=True)

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 128, temperature: float = 0.0, stop: Sequence[str] = (),
               cancel: CancelToken | None = None, session_key: str | None = None) -> Generator[Token, None, GenerationStats]:
        self.calls.append(list(messages))
        text = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        words = text.split(" ")
        t0 = time.perf_counter()
        n = 0
        for i, w in enumerate(words[:max_tokens]):
            if cancel is not None and cancel.cancelled:
                return GenerationStats(0, 0, n, 0.0, time.perf_counter() - t0, "cancelled")
            time.sleep(self.token_s)
            n += 1
            self.produced += 1
            yield Token(w if i == 0 else " " + w, i)
        return GenerationStats(0, 0, n, self.token_s, time.perf_counter() - t0, "stop")

    def tool_call(self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, cancel: CancelToken | None = None,
                  session_key: str | None = None) -> ToolCall | None:
        return None


class FailingLLM(ScriptedLLM):
    """Raises the way a crashed model does, before its first token."""

    def stream(self, messages: Sequence[Message], **kw: object) -> Generator[Token, None, GenerationStats]:
        raise EngineError("llama.cpp: simulated crash")
        yield  # pragma: no cover


class HangingLLM(ScriptedLLM):
    """Never produces a token (a wedged GPU): only cancellation ends it."""

    def stream(self, messages: Sequence[Message], *, cancel: CancelToken | None = None, **kw: object) -> Generator[Token, None, GenerationStats]:
        while cancel is None or not cancel.cancelled:
            time.sleep(0.02)
        return GenerationStats(0, 0, 0, 0.0, 0.0, "cancelled")
        yield  # pragma: no cover


class WordlessAfterFirstSTT(STT):
    """The real STT for the first utterance, then no words at all: what whisper returns for a
    cough or a door slam that VAD took for speech (real audio cannot make that happen on cue)."""

    def __init__(self, real: STT) -> None:
        self.real = real
        self.info = EngineInfo("stt", "wordless-after-first-fake", "-", "cpu", streaming=False)
        self.calls = 0

    def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None, prompt: str | None = None) -> Transcript:
        self.calls += 1
        if self.calls == 1:
            return self.real.transcribe(pcm, sample_rate, language=language, prompt=prompt)
        return Transcript(text="", normalized="", confidence=0.0, no_speech_prob=0.95, language="en",
                          audio_s=len(pcm) / 2 / sample_rate, decode_s=0.0)
