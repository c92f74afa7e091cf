"""What a dialog is given: the agent's behaviour (`AgentConfig`) and the engines it needs
(`DialogEngines`, which models.engines.Engines provides)."""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from phoneagent.dialog.dtmf import DigitConfig
from models.base import VAD, AudioChunk, CancelToken, Message, Token, ToolCall, ToolSpec, Transcript
from models.scheduler import Priority
from phoneagent.dialog.endpointer import EndpointerConfig
from phoneagent.tools.answer import Answer


class DialogEngines(Protocol):
    """What the dialog needs from the engines."""

    vad: VAD

    @property
    def llm_on_cpu(self) -> bool: ...

    @property
    def context_tokens(self) -> int: ...

    def count_tokens(self, messages: Sequence[Message]) -> int: ...

    async def transcribe(self, pcm: bytes, sample_rate: int, *, prompt: str | None = None, hypotheses: int = 1,
                         repeats: bool = False, priority: Priority = Priority.TURN) -> Transcript: ...

    @property
    def has_turn_model(self) -> bool: ...

    async def end_of_turn(self, pcm: bytes, sample_rate: int) -> float: ...

    def reply_tokens(self, messages: Sequence[Message], *, cancel: CancelToken, session_key: str | None = None, max_tokens: int = 96,
                     gate: threading.Event | None = None) -> AsyncGenerator[Token, None]: ...

    async def act(self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, cancel: CancelToken,
                  session_key: str | None = None, on_choice: Callable[[str], None] | None = None,
                  known: Mapping[str, Mapping[str, Any]] | None = None) -> ToolCall | None: ...

    async def prefill(self, messages: Sequence[Message], *, session_key: str | None = None, every_instance: bool = False,
                      open_turn: bool = False) -> int: ...

    @property
    def spare(self) -> bool: ...

    def speak(self, text: str, sample_rate: int, *, cancel: CancelToken, priority: Priority = Priority.TURN) -> AsyncGenerator[AudioChunk, None]: ...


@dataclass(frozen=True)
class ToolUse:
    """One tool as the dialog offers it to the LLM and speaks its outcome. A webhook tool is run
    by the call's ToolRunner under the same name."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    filler: str = "Let me check that."  # said as soon as the tool is chosen ("" for none)
    answer: Answer | None = None  # spoken verbatim from the result; None: the LLM phrases it
    not_found: str | None = None  # a 404 from the system (fields: the arguments)
    failed: str | None = None  # the system could not be reached; None: AgentConfig.tool_failed
    ask: str | None = None  # the caller has not said the arguments yet; None: AgentConfig.ask_for

    @property
    def spec(self) -> ToolSpec:
        """What the LLM sees: the parameters it fills in (not those taken from the call, nor the
        slots, which the dialog captures from the caller's own words: capture.py)."""
        props = dict(self.parameters.get("properties") or {})
        own = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("x-")} for k, v in props.items()
               if k not in self.from_call and not (isinstance(v, dict) and "x-slot" in v)}
        params = {**self.parameters, "properties": own}
        if "required" in params:
            params["required"] = [r for r in params["required"] if r in own]
        return ToolSpec(self.name, self.description, params)

    @property
    def from_call(self) -> dict[str, str]:
        """Parameters the dialog fills from the call ("x-from": "caller_number"), never the LLM:
        a caller's identity comes from the network, not from what the model writes."""
        props = self.parameters.get("properties") or {}
        return {k: v["x-from"] for k, v in props.items() if isinstance(v, dict) and "x-from" in v}

    @property
    def unchecked(self) -> set[str]:
        """Parameters the model derives rather than copies ("x-grounded": false, e.g. a date
        from "next Tuesday", or a summary): exempt from the said-by-the-caller check."""
        props = self.parameters.get("properties") or {}
        return {k for k, v in props.items() if isinstance(v, dict) and v.get("x-grounded") is False}


@dataclass(frozen=True)
class CallerLookupUse:
    tool: str
    argument: str = "phone"
    found_field: str = "found"


@dataclass(frozen=True)
class CallerMemory:
    """Recall this caller's earlier calls at call start (memory.py)."""

    calls: int = 3  # newest first
    within_days: float = 30.0


@dataclass(frozen=True)
class EscalationRules:
    on_request: bool = True  # the LLM may choose transfer_to_human (besides the explicit-request rule)
    max_failures: int = 2  # tool failures + not-understood turns in one call
    repeated_question: bool = True  # the same question twice in a row
    frustration: tuple[str, ...] = ("this is ridiculous", "useless", "waste of time", "fed up")


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
    # Once the caller is waiting (the endpoint is final) and the first clause is not out yet,
    # it is cut at the next word from this many words (2-6; 6 leaves only the fixed
    # 6-word cap): a first clause ready before the endpoint keeps its phrase. On the 2-core
    # CPU this took the plain turn's V2V p50 from 1179 to 999 ms with the 0.5B model (README,
    # "Plain-turn latency").
    first_clause_words_waiting: int = 3
    min_confidence: float = 0.25
    preroll_s: float = 0.3  # audio kept before speech start (VAD onset is late by a window)
    pause_on_onset: bool = True  # hold playout at speech onset; resume if it was a backchannel
    speculate: bool = True  # start STT/LLM/TTS at a short pause, speak once the endpoint is final
    # Ask the end-of-turn model at each pause (thresholds in `endpointer`). Off by default:
    # bench/turn_end.py found no setting that beats the fixed silence on its sets (README).
    end_of_turn_model: bool = False
    # The words at a pause (the speculative reply's transcript) that stop mid-sentence ("I want
    # to", phoneagent/dialog/unfinished.py) hold the turn open up to the endpointer's max_delay_s.
    unfinished_words: bool = True
    # While the caller is still speaking, each time this many more seconds of their turn have
    # been heard, their words so far are transcribed and evaluated into the call's LLM cache
    # (phoneagent/dialog/ahead.py), so the reply at the pause evaluates only the last few
    # words: on a CPU a prompt token costs ~12 ms with the 0.5B model. Only while the STT and
    # the LLM are idle and the LLM runs on the CPU (on a GPU a prompt costs a few ms). 0: off.
    words_ahead_s: float = 0.8
    # Hold LLM decoding while the first clause is synthesised: on a CPU-only box the two compete
    # for cores and the first audio comes ~2x later. None: only when the LLM runs on the CPU.
    hold_llm_for_first_audio: bool | None = None
    endpointer: EndpointerConfig = field(default_factory=EndpointerConfig)
    dtmf: DigitConfig = field(default_factory=DigitConfig)
    # --- agents that act (agent files): tools, grounding, escalation ---
    language: str = "en"
    backchannels: tuple[str, ...] = ()  # acknowledgements beyond the language's own ("gotcha")
    greeting_known: str | None = None  # after a caller lookup found them (fields: its result)
    goodbye: str = "Thank you for calling. Goodbye."
    out_of_scope_prompt: str = "Sorry, I can't help with that on this line. Is there anything else I can do for you?"
    tool_failed: str = "Sorry, I can't reach that system right now, so I can't check that for you."
    ask_for: str = "Sure. Could you tell me the {what}?"
    # --- numbers and emails captured for a tool (capture.py): {value} as read back, {what} the slot ---
    read_back: str = "That's {value}. Is that right?"
    slot_again: str = "Sorry about that. Could you say the {what} again{or_keypad}?"
    slot_unclear: str = "Sorry, I didn't get the whole {what}. Could you say it again{or_keypad}?"
    # An email after a no (or not heard whole): spelled letters are what the recogniser gets right
    # most often once words failed (bench/value_slots.py, the email answers).
    slot_spell: str = "Sorry about that. Could you spell the {what} for me, letter by letter?"
    or_keypad: str = ", or type it on your keypad and press hash"
    slot_go_on: str = "Mm-hm."  # the caller paused part-way through a number
    slot_give_up: str = "Sorry, I couldn't get your {what}. Let's leave that for now."
    slot_max_rounds: int = 4  # read-backs and retries for one value before giving up
    # The recogniser's best texts for an answer to "what is the number?": the first with a value
    # of the slot's length is read back (bench/telephone_stt.py: mu-law, tiny.en, 49 -> 55 of 96
    # numbers right first time, 59 -> 74 of 96 repeats, ~+45 ms).
    slot_hypotheses: int = 5
    refuse_instructions: str = "Sorry, I can't share or change how I work. How can I help you today?"
    tools: tuple[ToolUse, ...] = ()
    out_of_scope: bool = False  # offer the LLM an explicit out-of-scope choice
    offer_end_call: bool = False  # offer the LLM an end_call choice
    caller_lookup: CallerLookupUse | None = None
    caller_memory: CallerMemory | None = None  # opt-in: earlier calls from this number, from the call records
    escalation: EscalationRules = field(default_factory=EscalationRules)

    def __post_init__(self) -> None:
        # Checked here, not mid-call by the chunker. Only 2-6 mean anything: the chunker's first
        # clause has at least 2 words and at most 6 (reply_chunker), as the agent file allows.
        if not 2 <= self.first_clause_words_waiting <= 6:
            raise ValueError(f"first_clause_words_waiting must be 2-6 words, got {self.first_clause_words_waiting}")
        if self.words_ahead_s < 0:
            raise ValueError(f"words_ahead_s must be 0 (off) or more seconds, got {self.words_ahead_s}")

    @property
    def acts(self) -> bool:
        """The LLM chooses a step (tool, transfer, end, refuse) before it answers."""
        return bool(self.tools) or self.out_of_scope or self.offer_end_call
