"""What a dialog is given: the agent's behaviour (`AgentConfig`) and the engines it needs
(`DialogEngines`, which models.engines.Engines provides)."""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from phoneagent.dialog.dtmf import DigitConfig
from models.base import VAD, AudioChunk, CancelToken, Message, Token, Transcript
from models.scheduler import Priority
from phoneagent.dialog.endpointer import EndpointerConfig


class DialogEngines(Protocol):
    """What the dialog needs from the engines."""

    vad: VAD

    @property
    def llm_on_cpu(self) -> bool: ...

    @property
    def context_tokens(self) -> int: ...

    def count_tokens(self, messages: Sequence[Message]) -> int: ...

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript: ...

    def reply_tokens(self, messages: Sequence[Message], *, cancel: CancelToken, session_key: str | None = None, max_tokens: int = 96,
                     gate: threading.Event | None = None) -> AsyncGenerator[Token, None]: ...

    def speak(self, text: str, sample_rate: int, *, cancel: CancelToken, priority: Priority = Priority.TURN) -> AsyncGenerator[AudioChunk, None]: ...


@dataclass(frozen=True)
class AgentConfig:
    """Per-agent behaviour: prompts, timers, thresholds."""

    name: str = "default"
    system_prompt: str = ("You are a helpful, brief phone agent on a telephone call. Answer in one or two short "
                          "spoken sentences of plain words: no lists, no markdown, no code.")
    greeting: str = "Hello, thanks for calling. How can I help you today?"
    reprompt: str = "Are you still there? How can I help?"
    goodbye_no_input: str = "I haven't heard anything, so I'll end the call now. Goodbye."
    clarify: str = "Sorry, I didn't catch that. Could you say it again?"
    resume_prefix: str = "Sorry, as I was saying,"  # before the unheard rest after a false-alarm barge-in
    busy: str = "Sorry, our lines are very busy. Could you say that again in a moment?"
    fallback: str = "Sorry, I'm having technical trouble. Please call back in a few minutes. Goodbye."
    filler: str = "One moment."
    outbound_greeting: str = "Hello, this is the phone agent calling. Is now a good time to talk?"
    amd: bool = True  # outbound: detect answering machines in the first 3 s
    voicemail_message: str | None = None  # left after the beep; None: hang up on a machine
    transfer_notice: str = "Please hold while I connect you to a colleague."
    transfer_unavailable: str = "Sorry, I can't transfer you right now, but I'm happy to keep helping."
    transfer_failed: str = "Sorry, nobody could take your call right now. I'm still here. How can I help?"
    no_input_s: float = 8.0
    max_reprompts: int = 1
    max_clarifications: int = 2  # in a row; then the fallback (a loop)
    filler_after_s: float = 1.5
    stt_timeout_s: float = 6.0
    first_token_timeout_s: float = 8.0
    step_timeout_s: float = 8.0  # any later token or TTS chunk
    max_reply_tokens: int = 64
    min_confidence: float = 0.25
    preroll_s: float = 0.3  # audio kept before speech start (VAD onset is late by a window)
    pause_on_onset: bool = True  # hold playout at speech onset; resume if it was a backchannel
    speculate: bool = True  # start STT/LLM/TTS at a short pause, speak once the endpoint is final
    # Hold LLM decoding while the first clause is synthesised: on a CPU-only box the two compete
    # for cores and the first audio comes ~2x later. None: only when the LLM runs on the CPU.
    hold_llm_for_first_audio: bool | None = None
    endpointer: EndpointerConfig = field(default_factory=EndpointerConfig)
    dtmf: DigitConfig = field(default_factory=DigitConfig)
