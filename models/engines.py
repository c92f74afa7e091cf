"""The engine set a service runs: loaded and warmed once at start, shared by every call.

Each engine sits behind its own `EngineScheduler` (bounded queue, its own workers, priorities,
batching for whisper), so calls share engines without one global lock. The dialog layer only
uses the async methods here; it never touches a model object directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from media.clock import Clock, MonotonicClock
from models import catalog as cat
from models.base import LLM, STT, TTS, VAD, AudioChunk, CancelToken, EngineError, EngineInfo, Message, Token, ToolCall, ToolSpec, Transcript, TurnModel
from models.scheduler import EngineScheduler, Priority

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    """Which catalogue entries to run and how much parallelism each engine gets."""

    vad: str = "silero-vad"
    stt: str = "whisper-tiny.en"
    # The bundled instruction model: a caller gets answers, not the 270M base model's rambling
    # ("gemma-3-270m" stays in the catalogue as the latency baseline).
    llm: str = "qwen2.5-coder-0.5b-instruct"
    tts: str = "piper-joe-medium"
    turn: str = "smart-turn-v3.2"  # the end-of-turn model agents may use ("" for none)
    device: str = "auto"  # "cpu", "cuda" or "auto" (CUDA where present)
    stt_workers: int = 1
    stt_max_batch: int = 8
    # Two llama.cpp instances (weights mmap-shared, ~240 MB more RSS): with one, a second call's
    # first token waits for the first call's whole reply (2 calls on 2 cores: V2V p50 1650 -> 990 ms).
    llm_pool: int = 2
    llm_ctx: int = 2048
    tts_workers: int = 1
    threads: int | None = None  # CPU threads per model call; None = each engine's default
    # (llama: cores-1, because 2 threads on a 2-core box collapse when anything else runs, widened
    # per step to the cores no other engine is computing on: models/cpu.py; set: fixed at that)
    max_queue: dict[str, int] = field(default_factory=lambda: {"stt": 32, "llm": 32, "tts": 64})
    max_wait_s: dict[str, float] = field(default_factory=lambda: {"stt": 3.0, "llm": 5.0, "tts": 3.0})
    language: str | None = "en"
    # An OpenAI-compatible inference server (llama-server, vLLM, ...) instead of in-process
    # llama.cpp: its base URL; `llm` is then the model name it serves. API key: PHONEAGENT_LLM_API_KEY.
    llm_url: str = ""
    llm_schema_style: Literal["json_object", "json_schema"] = "json_object"  # tool-call response format: llama.cpp | vLLM


def _load_role(role: str, name: str, config: EngineConfig, catalog: dict[str, cat.ModelEntry], times: dict[str, float]) -> Any:
    """One engine from the catalogue, loaded and warmed."""
    from models.llama import LlamaLLM
    from models.piper_tts import PiperTTS
    from models.silero import SileroVAD
    from models.smart_turn import SmartTurn
    from models.whisper import WhisperSTT

    dev: Any = config.device
    t = time.perf_counter()
    engine: Any
    entry = None if role == "llm" and config.llm_url else cat.get(catalog, name)
    if entry is None:
        engine = _remote_llm(name, config)
    elif role == "vad":
        engine = SileroVAD(entry.path, device=dev)
    elif role == "turn":
        engine = SmartTurn(entry.path, threads=1)
        engine.warmup()
    elif role == "stt":
        engine = WhisperSTT(entry.path, device=dev, cpu_threads=config.threads or 2, num_workers=config.stt_workers, language=config.language)
        engine.warmup()
    elif role == "llm":
        engine = LlamaLLM(entry.path, n_ctx=config.llm_ctx, n_threads=config.threads, pool_size=config.llm_pool,
                          n_gpu_layers=None if dev != "cpu" else 0, max_threads=config.threads)
        engine.warmup()
    else:
        engine = PiperTTS(entry.path, entry.config_path, device=dev, intra_op_threads=config.threads or 0)
    times[role if role not in times else f"{role}:{name}"] = time.perf_counter() - t
    return engine


def _remote_llm(name: str, config: EngineConfig) -> LLM:
    """The LLM on an inference server. An unreachable server is logged, not fatal: calls get the
    spoken fallback until it answers (and the preflight says so)."""
    import os

    from models.openai_llm import OpenAICompatLLM

    engine = OpenAICompatLLM(config.llm_url, name, api_key=os.environ.get("PHONEAGENT_LLM_API_KEY", ""),
                             context_tokens=config.llm_ctx, schema_style=config.llm_schema_style)
    try:
        log.info("llm server %s serves %s", config.llm_url, ", ".join(engine.served_models()))
    except EngineError as exc:
        log.warning("llm server %s not reachable at start (%s): calls get the fallback until it is", config.llm_url, exc)
    return engine


class Engines:
    """Loaded engines plus their schedulers. Build with `Engines.load(config)` (blocking)."""

    def __init__(self, vad: VAD, stt: STT, llm: LLM, tts: TTS, config: EngineConfig, *, clock: Clock | None = None,
                 load_s: dict[str, float] | None = None, turn: TurnModel | None = None) -> None:
        self.vad, self.stt, self.llm, self.tts, self.turn = vad, stt, llm, tts, turn
        # The end-of-turn model gets its own worker: it must never wait behind STT.
        self._turn_pool = ThreadPoolExecutor(1, thread_name_prefix="turn-model") if turn is not None else None
        self.config = config
        self.load_s = load_s or {}
        clock = clock or MonotonicClock()
        stt_engine = stt
        language = config.language

        def stt_batch(items: list[tuple[bytes, int, str | None, int, bool]]) -> list[Transcript]:
            """One engine call per distinct decoding (prompt, hypotheses, repeats): most turns
            have none; a caller asked for a number has them. Results back in queue order."""
            out: list[Transcript | None] = [None] * len(items)
            for prompt, n, repeats in dict.fromkeys(item[2:] for item in items):
                mine = [i for i, item in enumerate(items) if item[2:] == (prompt, n, repeats)]
                batch = stt_engine.transcribe_batch([items[i][:2] for i in mine], language=language, prompt=prompt, hypotheses=n,
                                                    repeats=repeats)
                for i, tr in zip(mine, batch):
                    out[i] = tr
            return [tr for tr in out if tr is not None]

        self.stt_q = EngineScheduler(
            "stt", workers=config.stt_workers, max_queue=config.max_queue["stt"], max_wait_s=config.max_wait_s["stt"],
            clock=clock, batch_fn=stt_batch, max_batch=config.stt_max_batch,
        )
        self.llm_q = EngineScheduler("llm", workers=config.llm_pool, max_queue=config.max_queue["llm"], max_wait_s=config.max_wait_s["llm"], clock=clock)
        self.tts_q = EngineScheduler("tts", workers=config.tts_workers, max_queue=config.max_queue["tts"], max_wait_s=config.max_wait_s["tts"], clock=clock)

    @classmethod
    def load(cls, config: EngineConfig | None = None, catalog: dict[str, cat.ModelEntry] | None = None) -> Engines:
        """Load and warm every engine before the first call is accepted (seconds, blocking)."""
        config = config or EngineConfig()
        catalog = catalog if catalog is not None else cat.load_catalog()
        times: dict[str, float] = {}
        roles = ("vad", "stt", "llm", "tts") + (("turn",) if config.turn else ())
        loaded = {role: _load_role(role, getattr(config, role), config, catalog, times) for role in roles}
        for role, secs in times.items():
            log.info("loaded %s in %.2f s", role, secs)
        return cls(loaded["vad"], loaded["stt"], loaded["llm"], loaded["tts"], config, load_s=times, turn=loaded.get("turn"))

    @classmethod
    def load_variants(cls, config: EngineConfig, variants: Sequence[EngineConfig],
                      catalog: dict[str, cat.ModelEntry] | None = None) -> list[Engines]:
        """One Engines per config in `variants` (agents that choose another LLM, STT, voice or
        language), each distinct model loaded once and shared; `config` gives the rest (pools,
        threads, device) and is loaded itself only when there are no variants."""
        catalog = catalog if catalog is not None else cat.load_catalog()
        lead = variants[0] if variants else config
        first = cls.load(lead, catalog)
        models: dict[tuple[str, str], Any] = {("stt", lead.stt): first.stt, ("llm", lead.llm): first.llm, ("tts", lead.tts): first.tts}
        made: list[Engines] = []
        for v in variants:
            if (v.stt, v.llm, v.tts, v.language) == (lead.stt, lead.llm, lead.tts, lead.language):
                made.append(first)
                continue
            for role in ("stt", "llm", "tts"):
                name = getattr(v, role)
                if (role, name) not in models:
                    models[(role, name)] = _load_role(role, name, config, catalog, first.load_s)
            made.append(cls(first.vad, models[("stt", v.stt)], models[("llm", v.llm)], models[("tts", v.tts)], v, load_s=first.load_s,
                            turn=first.turn))
        return made

    def sharing(self, *, llm: LLM | None = None, config: EngineConfig | None = None) -> Engines:
        """The same loaded models behind fresh schedulers (queues bind to the running event
        loop); `llm` swaps in another LLM, e.g. a scripted fake in dialog-flow tests."""
        return Engines(self.vad, self.stt, llm or self.llm, self.tts, config or self.config, load_s=self.load_s, turn=self.turn)

    @property
    def llm_on_cpu(self) -> bool:
        """The LLM shares the cores with STT and TTS (no GPU offload)."""
        return self.llm.info.device == "cpu"

    @property
    def context_tokens(self) -> int:
        """The LLM's context window (prompt + reply), in its tokens."""
        return self.llm.context_tokens

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens of `messages` in the LLM's own layout (exact for llama.cpp)."""
        return self.llm.count_tokens(messages)

    @property
    def infos(self) -> list[EngineInfo]:
        return [self.vad.info, self.stt.info, self.llm.info, self.tts.info] + ([self.turn.info] if self.turn is not None else [])

    # --- what the dialog layer calls ---
    @property
    def has_turn_model(self) -> bool:
        return self.turn is not None

    async def end_of_turn(self, pcm: bytes, sample_rate: int) -> float:
        """P(the caller's turn is complete) from its audio, on the model's own worker."""
        if self.turn is None or self._turn_pool is None:
            raise RuntimeError("no end-of-turn model loaded (EngineConfig.turn)")
        return await asyncio.get_running_loop().run_in_executor(self._turn_pool, self.turn.probability, pcm, sample_rate)

    async def transcribe(self, pcm: bytes, sample_rate: int, *, prompt: str | None = None, hypotheses: int = 1, repeats: bool = False,
                         priority: Priority = Priority.TURN) -> Transcript:
        """`prompt`, `hypotheses`, `repeats`: what is expected (a number: see STT.transcribe)."""
        result: Transcript = await self.stt_q.submit_item((pcm, sample_rate, prompt, hypotheses, repeats), priority=priority)
        return result

    async def reply_tokens(
        self, messages: Sequence[Message], *, cancel: CancelToken, session_key: str | None = None,
        max_tokens: int = 96, temperature: float = 0.0, stop: Sequence[str] = (), priority: Priority = Priority.TURN,
        gate: threading.Event | None = None,
    ) -> AsyncGenerator[Token, None]:
        """`gate`: clear it to hold generation between tokens (see EngineScheduler.stream)."""
        llm = self.llm
        async for tok in self.llm_q.stream(
            lambda: llm.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop, cancel=cancel, session_key=session_key),
            priority=priority, cancel=cancel, gate=gate,
        ):
            yield tok

    async def tool_call(self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, cancel: CancelToken, session_key: str | None = None) -> ToolCall | None:
        llm = self.llm
        result: ToolCall | None = await self.llm_q.run(lambda: llm.tool_call(messages, tools, cancel=cancel, session_key=session_key), cancel=cancel)
        return result

    async def act(self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, cancel: CancelToken, session_key: str | None = None,
                  on_choice: Callable[[str], None] | None = None, known: Mapping[str, Mapping[str, Any]] | None = None,
                  ) -> ToolCall | None:
        """The constrained next step (a tool call, or None: answer in words); see LLM.act.
        `on_choice` runs on the event loop."""
        llm, loop = self.llm, asyncio.get_running_loop()

        def chosen(name: str) -> None:
            if on_choice is not None:
                loop.call_soon_threadsafe(on_choice, name)

        result: ToolCall | None = await self.llm_q.run(
            lambda: llm.act(messages, tools, cancel=cancel, session_key=session_key, on_choice=chosen, known=known), cancel=cancel)
        return result

    async def prefill(self, messages: Sequence[Message], *, session_key: str | None = None, every_instance: bool = False,
                      open_turn: bool = False, priority: Priority = Priority.BACKGROUND) -> int:
        """Evaluate a conversation into the LLM's cache ahead of the next turn (LLM.prefill)."""
        llm = self.llm
        done: int = await self.llm_q.run(
            lambda: llm.prefill(messages, session_key=session_key, every_instance=every_instance, open_turn=open_turn), priority=priority)
        return done

    @property
    def spare(self) -> bool:
        """Nothing queued or running on the STT or the LLM: work ahead of need costs no caller."""
        return self.stt_q.queued == 0 and self.stt_q.running == 0 and self.llm_q.queued == 0 and self.llm_q.running == 0

    async def speak(self, text: str, sample_rate: int, *, cancel: CancelToken, priority: Priority = Priority.TURN) -> AsyncGenerator[AudioChunk, None]:
        tts = self.tts
        async for chunk in self.tts_q.stream(lambda: tts.synthesize(text, sample_rate, cancel=cancel), priority=priority, cancel=cancel):
            yield chunk

    def metrics(self) -> dict[str, Any]:
        return {"stt": self.stt_q.metrics.snapshot(), "llm": self.llm_q.metrics.snapshot(), "tts": self.tts_q.metrics.snapshot()}

    async def close_schedulers(self) -> None:
        """Stop this view's queues; the models stay loaded (a `sharing()` view is done)."""
        for q in (self.stt_q, self.llm_q, self.tts_q):
            await q.close()
        if self._turn_pool is not None:
            self._turn_pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        await self.close_schedulers()
        close = getattr(self.llm, "close", None)
        if close is not None:
            close()
