"""Piper TTS (VITS on onnxruntime) at the call's sample rate: it speaks what it is given.

Piper synthesises one whole text per model run, so the first audio of a long text waits for
all of it: the dialog's chunker (phoneagent/dialog/chunker.py, the one clause splitter) hands
it one clause at a time. Piper peak-normalises each chunk by default, which makes a short
"Sure," as loud as a long sentence's loudest syllable; we turn that off and level each clause
to one target speech level (gated RMS) with a bounded gain and a soft limiter instead, so
loudness is the same across clauses and replies and nothing clips.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from piper.config import PiperConfig, SynthesisConfig
from piper.voice import PiperVoice

from media.pcm import StreamResampler, to_array, to_bytes
from models import catalog, cpu
from models.base import TTS, AudioChunk, CancelToken, EngineInfo, ModelFileError, require_file
from models.silero import select_providers

FloatArray = npt.NDArray[np.float32]

SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)

# --- loudness --------------------------------------------------------------------------------


def _frame_energy(audio: FloatArray, frame: int) -> npt.NDArray[np.float64]:
    """Mean square of each whole `frame`-sample frame (a trailing partial frame is left out)."""
    n = audio.size // frame
    frames = audio[: n * frame].astype(np.float64).reshape(n, frame)
    return np.asarray(np.mean(frames * frames, axis=1), dtype=np.float64)


def speech_level_dbfs(audio: FloatArray, sample_rate: int, gate_db: float = 30.0) -> float:
    """RMS over 20 ms frames within `gate_db` of the loudest one (pauses don't pull it down)."""
    frame = max(1, sample_rate // 50)
    n = audio.size // frame
    if n == 0:
        x = audio.astype(np.float64)
        rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
        return 20.0 * np.log10(rms) if rms > 0 else float("-inf")
    energy = _frame_energy(audio, frame)
    loudest = float(energy.max())
    if loudest <= 1e-12:
        return float("-inf")
    gated = energy[energy >= loudest * 10.0 ** (-gate_db / 10.0)]
    return float(10.0 * np.log10(gated.mean()))


def trim_silence(audio: FloatArray, sample_rate: int, *, run_on: bool = False, gate_db: float = 40.0,
                 lead_s: float = 0.015, run_on_tail_s: float = 0.08) -> FloatArray:
    """Cut the silence Piper puts before every clause (40-70 ms for the joe voice: time the
    caller waits for nothing) down to `lead_s`. `run_on`: the clause stops mid-sentence (the
    chunker cut it at a word to start speaking sooner), so its sentence-final pause (130-260
    ms) shrinks to `run_on_tail_s` and the words run on into the next clause. Silence is what
    lies `gate_db` below the clause's loudest 5 ms; a voiced clause is never shortened inside."""
    frame = max(1, sample_rate // 200)
    if audio.size < frame:
        return audio
    energy = _frame_energy(audio, frame)
    loudest = float(energy.max())
    if loudest <= 1e-12:
        return audio
    voiced = np.flatnonzero(energy >= loudest * 10.0 ** (-gate_db / 10.0))
    start = max(0, int(voiced[0]) * frame - round(lead_s * sample_rate))
    end = min(audio.size, (int(voiced[-1]) + 1) * frame + round(run_on_tail_s * sample_rate)) if run_on else audio.size
    return audio[start:end]


def soft_limit(x: FloatArray, threshold: float = 0.708, ceiling: float = 0.89) -> FloatArray:
    """Identity below `threshold` (-3 dBFS), tanh knee above, never beyond `ceiling` (-1 dBFS).

    Stateless, so it cannot click at clause seams; it only touches the rare peaks."""
    mag = np.abs(x)
    over = mag > threshold
    if not over.any():
        return x
    span = ceiling - threshold
    out = x.copy()
    out[over] = np.sign(x[over]) * (threshold + span * np.tanh((mag[over] - threshold) / span))
    return out


def _catch_overshoot(pcm: bytes) -> bytes:
    """Band-limiting can push a limited peak ~1 dB higher (Gibbs); squash only what exceeds
    -0.9 dBFS so it never reaches full scale. Stateless, so seams stay clean."""
    x = to_array(pcm)
    if int(np.abs(x.astype(np.int32)).max()) < 29491:
        return pcm
    return to_bytes(soft_limit(x.astype(np.float32) / 32768.0, threshold=0.9, ceiling=0.99) * 32768.0)


# --- the engine ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Loaded:
    """What loading costs ~1.5 s for; shared by `with_options` variants."""

    voice: PiperVoice
    model_path: Path
    providers: list[str]
    lock: threading.Lock


class PiperTTS(TTS):
    """One loaded Piper voice, safe to use from several threads at once.

    Thread safety: `InferenceSession.run` is thread-safe, piper's espeak-ng phonemizer is a
    process-wide C library that piper guards with a module lock, and we phonemize under our own
    lock too (piper lazily creates phonemizers for some languages). Everything per reply (the
    resampler, the cancel token) lives in the generator.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        config_path: Path | None = None,
        *,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        intra_op_threads: int = 0,
        target_dbfs: float = -18.0,
        max_gain_db: float = 12.0,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        warmup: bool = True,
    ) -> None:
        if model_path is None:
            default_model, default_config = catalog.piper_joe()
            model_path = default_model
            config_path = config_path or default_config
        self._loaded = _load(model_path, config_path or Path(f"{model_path}.json"), device, intra_op_threads)
        self._core_use = intra_op_threads  # 0: onnxruntime's default, every core
        self.target_dbfs = target_dbfs
        self.max_gain_db = max_gain_db
        self._syn = SynthesisConfig(
            length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale, normalize_audio=False
        )
        cfg = self._loaded.voice.config
        self.native_rate: int = cfg.sample_rate
        self.info = EngineInfo(
            role="tts",
            name=f"piper-{Path(model_path).name.removesuffix('.onnx').split('-', 1)[-1]}",
            model_path=str(model_path),
            device="cuda" if "CUDAExecutionProvider" in self._loaded.providers else "cpu",
            sample_rates=tuple(sorted({*SAMPLE_RATES, self.native_rate})),
            streaming=True,
            max_parallel=1,
            extra={"native_rate": self.native_rate, "target_dbfs": target_dbfs, "providers": self._loaded.providers},
        )
        if warmup:  # the first run allocates arenas and is ~2x slower; pay it at start-up
            self._render("Hello.")

    def with_options(
        self, *, length_scale: float | None = None, noise_scale: float | None = None, noise_w_scale: float | None = None
    ) -> PiperTTS:
        """The same loaded voice with other synthesis settings (e.g. slower speech), no reload."""
        other = object.__new__(PiperTTS)
        other.__dict__.update(self.__dict__)
        other._syn = dataclasses.replace(self._syn, length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale)
        return other

    def synthesize(self, text: str, sample_rate: int, *, cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        """Validate now (not at first `next`), then speak `text` as one clause: one chunk (none
        for text with nothing to say)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        if sample_rate not in self.info.sample_rates:
            raise ValueError(f"piper TTS: unsupported sample rate {sample_rate!r}; use one of {self.info.sample_rates}")
        return self._stream(" ".join(text.split()), sample_rate, cancel)

    def _stream(self, clause: str, sample_rate: int, cancel: CancelToken | None) -> Iterator[AudioChunk]:
        if cancel is not None:
            cancel.raise_if_cancelled()
        if not clause:
            return
        audio = self._render(clause)
        if cancel is not None:
            cancel.raise_if_cancelled()  # don't hand out audio for a reply already dropped
        if not audio.size:
            return
        resampler = StreamResampler(self.native_rate, sample_rate)
        pcm = resampler.process(to_bytes(audio * 32767.0)) + resampler.flush()
        if sample_rate != self.native_rate and pcm:
            pcm = _catch_overshoot(pcm)
        if pcm:
            yield AudioChunk(pcm=pcm, sample_rate=sample_rate, text=clause)

    def _render(self, clause: str) -> FloatArray:
        """One clause -> levelled float audio at the voice's native rate (one model run), with
        no dead air before it (and, cut mid-sentence, little after it)."""
        voice = self._loaded.voice
        with self._loaded.lock:
            sentences = voice.phonemize(clause)
        # espeak ends a sentence after "Dr." even where we don't; speak the clause in one run
        # so "Dr. Smith" gets no sentence-final fall and pause in the middle.
        phonemes: list[str] = []
        for sentence in (s for s in sentences if s):
            if phonemes:
                if phonemes[-1] == ".":
                    phonemes.pop()
                phonemes.append(" ")
            phonemes.extend(sentence)
        if not phonemes:
            return np.zeros(0, dtype=np.float32)
        with cpu.PROCESS.computing(self._core_use):  # so the LLM does not spread onto the cores it uses
            audio = np.asarray(voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), self._syn), dtype=np.float32).reshape(-1)
        return trim_silence(self._level(audio), self.native_rate, run_on=clause[-1].isalnum())

    def _level(self, audio: FloatArray) -> FloatArray:
        level = speech_level_dbfs(audio, self.native_rate)
        if not np.isfinite(level):
            return audio
        gain_db = min(max(self.target_dbfs - level, -self.max_gain_db), self.max_gain_db)
        return soft_limit(audio * np.float32(10.0 ** (gain_db / 20.0)))


def _load(model_path: Path, config_path: Path, device: Literal["auto", "cpu", "cuda"], threads: int) -> _Loaded:
    """Load the voice ourselves (not `PiperVoice.load`) to pick threads and a CPU fallback
    behind CUDA, and to turn every bad-file failure into a ModelFileError naming the file."""
    require_file(Path(model_path), "piper TTS", catalog.INSTALL_HINT)
    require_file(Path(config_path), "piper TTS config", catalog.INSTALL_HINT)
    try:
        raw: Any = json.loads(Path(config_path).read_text(encoding="utf-8"))
        config = PiperConfig.from_dict(raw)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"piper TTS: voice config {config_path} is not a valid piper config: {exc!r}. {catalog.INSTALL_HINT}") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    # Every sentence is a new input shape. onnxruntime's memory pattern keeps a plan per shape
    # it has seen, so a service's RSS grew without end (bench/memory.py: +86 MB over 160
    # sentences with it, +18 MB and levelling off without; the soak saw +200 MB in 10 min).
    # Synthesis is no slower without it (242 vs 257 ms p50 here). The CPU arena stays: turning
    # it off as well cost ~60 ms a sentence.
    opts.enable_mem_pattern = False
    try:
        session = ort.InferenceSession(str(model_path), sess_options=opts, providers=select_providers(device))
    except Exception as exc:  # onnxruntime's pybind errors are not a public exception type
        raise ModelFileError(f"piper TTS: model file {model_path} could not be loaded (corrupt?): {exc}. {catalog.INSTALL_HINT}") from exc
    names = {i.name for i in session.get_inputs()}
    if not {"input", "input_lengths", "scales"} <= names:
        raise ModelFileError(f"piper TTS: model file {model_path} is not a piper voice (inputs {sorted(names)})")
    voice = PiperVoice(session=session, config=config)
    return _Loaded(voice=voice, model_path=Path(model_path), providers=session.get_providers(), lock=threading.Lock())
