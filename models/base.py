"""One small interface per engine role, and the types that cross it.

Engines are blocking, thread-safe objects (model calls release the GIL); the scheduler
(`models.scheduler`) runs them in worker threads with bounded queues, so nothing here is async.
Streaming engines are generators that check a `CancelToken` between steps, so a barge-in stops
work within one token / one sentence instead of at the end of the reply.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ModelFileError(FileNotFoundError):
    """A model file is missing or corrupt. The message names the file and how to provide it."""


class EngineError(RuntimeError):
    """An engine failed while running (not a missing file): the caller should fall back."""


class Cancelled(Exception):
    """Raised inside an engine when its CancelToken fires."""


class CancelToken:
    """Thread-safe cancellation flag shared between the event loop and an engine thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason)


Device = Literal["cpu", "cuda", "remote"]  # remote: an inference server on the network


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is and can do; logged at start and written into benchmark results."""

    role: Literal["vad", "turn", "stt", "llm", "tts"]
    name: str
    model_path: str
    device: Device
    sample_rates: tuple[int, ...] = ()  # VAD/STT input or TTS output rates it handles
    streaming: bool = False  # LLM tokens / TTS chunks before the whole result
    partials: bool = False  # STT interim results while the caller is still talking
    batching: bool = False  # several requests in one model call
    tool_calls: bool = False  # LLM: grammar-constrained JSON tool calls
    max_parallel: int = 1  # requests it can run at once (threads, slots or instances)
    extra: dict[str, Any] = field(default_factory=dict)


# --- VAD -------------------------------------------------------------------------------------


class VADStream(ABC):
    """Per-call VAD state: feed audio in any chunk size, get one probability per window."""

    sample_rate: int
    window_samples: int

    @abstractmethod
    def process(self, pcm: bytes) -> list[float]:
        """Speech probability (0..1) for each complete window in the buffered audio."""

    @abstractmethod
    def reset(self) -> None:
        """Forget recurrent state (e.g. after the agent's own speech)."""

    @property
    def window_ms(self) -> float:
        return self.window_samples * 1000.0 / self.sample_rate

    @property
    def buffered_samples(self) -> int:
        """Samples received but not yet in a complete window (for window timestamps)."""
        return 0


class VAD(ABC):
    info: EngineInfo

    @abstractmethod
    def stream(self, sample_rate: int) -> VADStream:
        """A fresh per-call stream at 8000 or 16000 Hz."""


class TurnModel(ABC):
    """A learned end-of-turn signal: how likely the caller's turn is complete, from its audio."""

    info: EngineInfo

    @abstractmethod
    def probability(self, pcm: bytes, sample_rate: int) -> float:
        """P(turn complete) in 0..1 for the caller's audio up to the pause (blocking, ~tens of ms)."""


# --- STT -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    text: str  # as recognised
    normalized: str  # telephony-normalised for the dialog layer (digits, times, emails)
    confidence: float  # 0..1, exp(mean token logprob)
    no_speech_prob: float  # 0..1, the model's own "this was not speech"
    language: str
    audio_s: float
    decode_s: float
    alternatives: tuple[str, ...] = ()  # the recogniser's next-best texts, best first (only when asked for)
    # What the recogniser decoded but blanked by its own "no speech" rule: not a turn's words,
    # but enough to tell a faint "uh huh" the VAD did hear from an interruption (dialog/turns.py).
    withheld: str = ""


class STT(ABC):
    info: EngineInfo

    @abstractmethod
    def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None, prompt: str | None = None,
                   hypotheses: int = 1, repeats: bool = False) -> Transcript:
        """One utterance of slin audio -> text. Bounded: never a multi-second fallback loop.
        `prompt`: text taken as said before (what is expected); `hypotheses` > 1: up to that
        many texts, the rest in `alternatives` (a value with a known form can be picked from
        them); `repeats`: the words repeat by nature (a digit string: "five five five"), so
        repetition is not penalised, only long loops are stopped."""

    def transcribe_batch(self, items: Sequence[tuple[bytes, int]], *, language: str | None = None, prompt: str | None = None,
                         hypotheses: int = 1, repeats: bool = False) -> list[Transcript]:
        """Several utterances; engines that can batch override this."""
        return [self.transcribe(pcm, rate, language=language, prompt=prompt, hypotheses=hypotheses, repeats=repeats)
                for pcm, rate in items]


# --- LLM -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str | None = None  # tool name for role="tool"
    tool_call: ToolCall | None = None  # an assistant turn that called a tool (content unused)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


@dataclass(frozen=True)
class Token:
    text: str
    index: int  # 0-based position in this reply


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    cached_tokens: int  # prompt tokens served from the prefix cache
    completion_tokens: int
    ttft_s: float
    total_s: float
    finish_reason: str  # "stop", "length", "cancelled"


def drain(tokens: Iterator[Token]) -> tuple[list[Token], GenerationStats]:
    """Run an `LLM.stream` generator to the end: its tokens and the stats it returns."""
    out: list[Token] = []
    while True:
        try:
            out.append(next(tokens))
        except StopIteration as done:
            stats: GenerationStats = done.value
            return out, stats


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A tokenizer-free estimate of the prompt size: about 4 characters a token, plus 4 tokens
    of turn markup a message. Engines that have a tokenizer count exactly (`LLM.count_tokens`)."""
    return sum((len(m.content) + len(m.name or "")) // 4 + 4 for m in messages)


class LLM(ABC):
    info: EngineInfo

    @property
    def context_tokens(self) -> int:
        """The context window in tokens, prompt and reply together; the conversation budget
        derives from it. Engines that know their real size (llama.cpp's n_ctx) override it."""
        return 2048

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens `messages` take as a prompt in this model's own layout (generation prompt
        included). The default estimates; LlamaLLM renders and tokenises exactly."""
        return estimate_tokens(messages)

    @abstractmethod
    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        cancel: CancelToken | None = None,
        session_key: str | None = None,
    ) -> Iterator[Token]:
        """Stream reply tokens. `session_key` (the call id) lets a pool keep a call on the
        instance whose prefix cache already holds its conversation. The generator's return
        value (StopIteration.value) is a GenerationStats."""

    def prefill(self, messages: Sequence[Message], *, session_key: str | None = None, every_instance: bool = False,
                open_turn: bool = False) -> int:
        """Evaluate `messages` (without a generation prompt) into the cache that will serve
        `session_key` next, so the next turn only evaluates what is new; `every_instance`
        warms a prefix shared by every call (an agent's instructions). After the agent's own
        words the caller's turn comes next, so its opening markers are evaluated too.
        `open_turn`: the last message is the caller's words so far, left open (no closing
        marker), so the turn's prompt with all its words reuses them. Returns the tokens
        evaluated. Engines without a prompt cache do nothing."""
        return 0

    @abstractmethod
    def tool_call(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        cancel: CancelToken | None = None,
        session_key: str | None = None,
    ) -> ToolCall | None:
        """Grammar-constrained choice: one of `tools` with schema-valid arguments, or None."""

    def act(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        cancel: CancelToken | None = None,
        session_key: str | None = None,
        on_choice: Callable[[str], None] | None = None,
        known: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ToolCall | None:
        """The agent's next step for the caller's last turn: a call of one of `tools`, or None
        to answer in words. `on_choice(name)` is told the tool as soon as it is chosen, before
        its arguments exist (the dialog starts its filler then). `known[tool][argument]` is a
        value the caller said verbatim: used as it is, not generated. Engines override this with
        a cheaper, prefix-cached form of the same constrained choice (LlamaLLM: a token or two
        on a plain turn)."""
        call = self.tool_call(messages, tools, cancel=cancel, session_key=session_key)
        if call is not None and on_choice is not None:
            on_choice(call.name)
        if call is not None and known and call.name in known:
            call = ToolCall(call.name, {**call.arguments, **known[call.name]})
        return call


# --- TTS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioChunk:
    pcm: bytes  # slin at `sample_rate`
    sample_rate: int
    text: str  # the sentence/clause this audio speaks (for "what was heard" bookkeeping)


class TTS(ABC):
    info: EngineInfo

    @abstractmethod
    def synthesize(self, text: str, sample_rate: int, *, cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        """Speak `text` at the call's rate, one chunk per sentence/clause, first chunk ASAP."""


def require_file(path: Path, what: str, how: str) -> Path:
    """Fail early and clearly when a model file is missing or empty."""
    if not path.is_file():
        raise ModelFileError(f"{what}: model file {path} is missing. {how}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{what}: model file {path} is empty (corrupt download?). {how}")
    return path
