"""smart-turn v3.2 (an end-of-turn classifier on Whisper-tiny's encoder) on onnxruntime.

Input: the last 8 s of the caller's audio at 16 kHz (zero-padded in front when shorter),
normalised to zero mean and unit variance, as an 80 x 800 Whisper log-mel spectrogram; output:
the probability that the turn is complete. The features come from faster-whisper's own
extractor (the same Slaney mel filters, periodic Hann window, centred STFT with the last frame
dropped, log10 clamped to 8 below the max, (x + 4) / 4) with no extra padding, which is what
the model was trained on (tests/models/test_smart_turn.py checks it on known turns).

One session serves every call (`run` is thread-safe); one inference takes ~40-60 ms on one
core, so the dialog runs it in its own small worker, never in the STT queue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from faster_whisper.feature_extractor import FeatureExtractor

from media.pcm import resample, to_array
from models import catalog, cpu
from models.base import EngineInfo, ModelFileError, TurnModel, require_file

RATE = 16000
WINDOW_S = 8
_EPS = 1e-7


class SmartTurn(TurnModel):
    def __init__(self, model_path: Path | None = None, *, threads: int = 1) -> None:
        path = require_file(model_path if model_path is not None else catalog.smart_turn_onnx(), "smart-turn", catalog.INSTALL_HINT)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelFileError(f"smart-turn: {path} could not be loaded ({type(exc).__name__}: {exc})") from exc
        inputs = {i.name for i in self._session.get_inputs()}
        if inputs != {"input_features"}:
            raise ModelFileError(f"smart-turn: {path} takes {sorted(inputs)}, not input_features: not a smart-turn v3 model")
        self._features = FeatureExtractor(feature_size=80, sampling_rate=RATE, hop_length=160, chunk_length=WINDOW_S, n_fft=400)
        self.info = EngineInfo(role="turn", name="smart-turn-v3.2", model_path=str(path), device="cpu", sample_rates=(8000, 16000),
                               extra={"threads": threads, "window_s": WINDOW_S})

    def features(self, pcm: bytes, sample_rate: int) -> np.ndarray:
        """(80, 800) float32 log-mel of the last 8 s, as the model expects."""
        x = to_array(resample(pcm, sample_rate, RATE)).astype(np.float32) / 32768.0
        n = RATE * WINDOW_S
        x = x[-n:] if x.size >= n else np.pad(x, (n - x.size, 0))
        x = (x - x.mean()) / np.sqrt(x.var() + _EPS)
        mel = self._features(x, padding=0)
        return np.asarray(mel[:, : n // 160], dtype=np.float32)

    def probability(self, pcm: bytes, sample_rate: int) -> float:
        feats = self.features(pcm, sample_rate)[np.newaxis]
        with cpu.PROCESS.computing():
            out = self._session.run(None, {"input_features": feats})[0]
        return float(np.asarray(out).reshape(-1)[0])

    def warmup(self) -> None:
        self.probability(bytes(RATE), RATE)
