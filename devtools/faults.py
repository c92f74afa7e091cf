"""Fault injectors around the real engines, for the fault table (bench/faults.py) and its tests.

A real whisper, llama.cpp or Piper cannot be made to crash or wedge on cue; these wrappers pass
every call through to the real engine until the `after`-th, then inject the fault on that call
and every later one: "raise" (an EngineError, as a crashed model gives) or "hang" (nothing at
all, as a wedged GPU gives; a hang ends at cancellation or, for engines that cannot be
cancelled mid-call, after `hang_s`, so a test process never keeps a stuck thread).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from models.base import (
    LLM, STT, TTS, AudioChunk, Cancelled, CancelToken, EngineError, EngineInfo, Message, Token, ToolCall, ToolSpec, Transcript,
)

Mode = Literal["raise", "hang"]


@dataclass
class Fault:
    """Pass `after` calls through, then fail every later one in `mode`."""

    mode: Mode
    after: int = 0
    hang_s: float = 20.0  # an uncancellable hang (STT) gives up after this, so its thread ends
    calls: int = 0
    injected: int = 0

    def strikes(self) -> bool:
        self.calls += 1
        if self.calls <= self.after:
            return False
        self.injected += 1
        return True

    def hit(self, what: str, cancel: CancelToken | None = None) -> None:
        """Raise, or block until `cancel` (then end as a real engine does on cancel) or `hang_s`."""
        if self.mode == "hang":
            deadline = time.monotonic() + self.hang_s
            while time.monotonic() < deadline:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled(f"{what}: cancelled while hung")
                time.sleep(0.02)
            raise EngineError(f"{what}: injected hang gave up after {self.hang_s:g} s")
        raise EngineError(f"{what}: injected crash")


def _info(real: EngineInfo, fault: Fault) -> EngineInfo:
    return dataclasses.replace(real, name=f"{real.name}+fault-{fault.mode}-after-{fault.after}")


class FaultySTT(STT):
    def __init__(self, real: STT, fault: Fault) -> None:
        self.real, self.fault = real, fault
        self.info = _info(real.info, fault)
        self._lock = threading.Lock()

    def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None, prompt: str | None = None,
                   hypotheses: int = 1, repeats: bool = False) -> Transcript:
        with self._lock:
            strikes = self.fault.strikes()
        if strikes:
            self.fault.hit("stt")
        return self.real.transcribe(pcm, sample_rate, language=language, prompt=prompt, hypotheses=hypotheses, repeats=repeats)


class FaultyLLM(LLM):
    """Faults on the spoken reply (`stream`); prefill and tool steps pass through."""

    def __init__(self, real: LLM, fault: Fault) -> None:
        self.real, self.fault = real, fault
        self.info = _info(real.info, fault)

    @property
    def context_tokens(self) -> int:
        return self.real.context_tokens

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.real.count_tokens(messages)

    def prefill(self, messages: Sequence[Message], *, session_key: str | None = None, every_instance: bool = False,
                open_turn: bool = False) -> int:
        return self.real.prefill(messages, session_key=session_key, every_instance=every_instance, open_turn=open_turn)

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 128, temperature: float = 0.0, stop: Sequence[str] = (),
               cancel: CancelToken | None = None, session_key: str | None = None) -> Generator[Token, None, Any]:
        if self.fault.strikes():  # in the generator: where the engine's worker thread runs it
            self.fault.hit("llm", cancel)
        return (yield from self.real.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop, cancel=cancel,
                                            session_key=session_key))

    def tool_call(self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, cancel: CancelToken | None = None,
                  session_key: str | None = None) -> ToolCall | None:
        return self.real.tool_call(messages, tools, cancel=cancel, session_key=session_key)

    def act(self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, cancel: CancelToken | None = None,
            session_key: str | None = None, on_choice: Callable[[str], None] | None = None,
            known: Mapping[str, Mapping[str, Any]] | None = None) -> ToolCall | None:
        return self.real.act(messages, tools, cancel=cancel, session_key=session_key, on_choice=on_choice, known=known)


class FaultyTTS(TTS):
    def __init__(self, real: TTS, fault: Fault) -> None:
        self.real, self.fault = real, fault
        self.info = _info(real.info, fault)

    def synthesize(self, text: str, sample_rate: int, *, cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        if self.fault.strikes():
            self.fault.hit("tts", cancel)
        yield from self.real.synthesize(text, sample_rate, cancel=cancel)
