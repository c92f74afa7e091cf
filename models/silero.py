"""Silero VAD v5 on onnxruntime directly (no torch, no `silero_vad` package import).

One `InferenceSession` serves every call (onnxruntime's `run` is thread-safe); each call gets a
`SileroStream` holding its recurrent state and the last few samples of the previous window.
That context must be prepended to every window: the model was trained that way, and without it
it never reports speech. `process_batch` runs one window from each of many calls in a single
`run` (state stacked along the batch axis), so one inference serves many concurrent calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models import catalog
from models.base import VAD, EngineInfo, ModelFileError, VADStream, require_file

FloatArray = npt.NDArray[np.float32]

SAMPLE_RATES = (8000, 16000)
WINDOW_SAMPLES = {8000: 256, 16000: 512}  # 32 ms: the only window sizes the model accepts
CONTEXT_SAMPLES = {8000: 32, 16000: 64}
STATE_SHAPE = (2, 1, 128)
_INPUTS = {"input", "state", "sr"}
_OUTPUTS = {"output", "stateN"}


def select_providers(device: Literal["auto", "cpu", "cuda"]) -> list[str]:
    """CUDA first when asked for (or "auto" and onnxruntime-gpu is present), CPU always last."""
    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ValueError(f"device='cuda' but onnxruntime has no CUDAExecutionProvider (available: {available})")
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class SileroVAD(VAD):
    """The shared model. Build once per process; hand out `stream(rate)` per call.

    `intra_op_threads=1` by default: a 32 ms window is far too small to gain from intra-op
    parallelism, and one thread per concurrent call scales better than threads fighting.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        intra_op_threads: int = 1,
        device: Literal["auto", "cpu", "cuda"] = "auto",
    ) -> None:
        path = require_file(model_path if model_path is not None else catalog.silero_vad_onnx(), "silero VAD", catalog.INSTALL_HINT)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # no optimizer chatter on stderr
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=select_providers(device))
        except Exception as exc:  # onnxruntime raises its own untyped pybind errors for bad files
            raise ModelFileError(f"silero VAD: model file {path} could not be loaded (corrupt?): {exc}. {catalog.INSTALL_HINT}") from exc
        inputs = {i.name for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if inputs != _INPUTS or not _OUTPUTS <= outputs:
            raise ModelFileError(
                f"silero VAD: model file {path} is not a silero v5 VAD (inputs {sorted(inputs)}, outputs {sorted(outputs)}; "
                f"expected inputs {sorted(_INPUTS)}, outputs {sorted(_OUTPUTS)})"
            )
        providers = self._session.get_providers()
        self.info = EngineInfo(
            role="vad",
            name="silero-vad",
            model_path=str(path),
            device="cuda" if "CUDAExecutionProvider" in providers else "cpu",
            sample_rates=SAMPLE_RATES,
            batching=True,
            extra={"window_ms": 32.0, "intra_op_threads": intra_op_threads, "providers": providers},
        )
        self._sr = {rate: np.array(rate, dtype=np.int64) for rate in SAMPLE_RATES}

    def stream(self, sample_rate: int) -> SileroStream:
        return SileroStream(self, sample_rate)

    def _run(self, x: FloatArray, state: FloatArray, sample_rate: int) -> tuple[FloatArray, FloatArray]:
        """One inference: x [B, ctx+W] (context already prepended), state [2, B, 128]."""
        out, new_state = self._session.run(["output", "stateN"], {"input": x, "state": state, "sr": self._sr[sample_rate]})
        return np.asarray(out, dtype=np.float32), np.asarray(new_state, dtype=np.float32)

    def process_batch(self, streams: Sequence[SileroStream], pcms: Sequence[bytes]) -> list[list[float]]:
        """Feed `pcms[i]` to `streams[i]` and return what `streams[i].process(pcms[i])` would,
        but run the i-th window of all streams (per sample rate) in one batched inference."""
        if len(streams) != len(pcms):
            raise ValueError(f"process_batch: {len(streams)} streams but {len(pcms)} audio chunks")
        if len({id(s) for s in streams}) != len(streams):
            raise ValueError("process_batch: a stream appears twice; its state can only advance once per window")
        for s in streams:
            if s._vad is not self:
                raise ValueError("process_batch: a stream belongs to another SileroVAD instance")
        pending = [s._take_windows(p) for s, p in zip(streams, pcms)]
        results: list[list[float]] = [[] for _ in streams]
        rounds = max((len(w) for w in pending), default=0)
        for r in range(rounds):
            for rate in SAMPLE_RATES:
                idx = [i for i, w in enumerate(pending) if len(w) > r and streams[i].sample_rate == rate]
                if not idx:
                    continue
                x = np.stack([np.concatenate((streams[i]._context, pending[i][r])) for i in idx])
                state = np.concatenate([streams[i]._state for i in idx], axis=1)
                out, new_state = self._run(x, state, rate)
                ctx = streams[idx[0]].context_samples
                for j, i in enumerate(idx):
                    streams[i]._state = np.ascontiguousarray(new_state[:, j : j + 1, :])
                    streams[i]._context = x[j, -ctx:].copy()
                    results[i].append(float(out[j, 0]))
        return results


class SileroStream(VADStream):
    """Per-call state: recurrent state, context samples and not-yet-windowed audio.

    Not thread-safe (one call feeds it from one task); the model behind it is.
    """

    def __init__(self, vad: SileroVAD, sample_rate: int) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"silero VAD supports 8000 or 16000 Hz, not {sample_rate!r}; resample first")
        self._vad = vad
        self.sample_rate = sample_rate
        self.window_samples = WINDOW_SAMPLES[sample_rate]
        self.context_samples = CONTEXT_SAMPLES[sample_rate]
        self._buf = bytearray()
        self.reset()

    def reset(self) -> None:
        self._state: FloatArray = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context: FloatArray = np.zeros(self.context_samples, dtype=np.float32)
        self._buf.clear()

    def _take_windows(self, pcm: bytes) -> FloatArray:
        """Buffer `pcm` (any size, even an odd byte count) and cut off whole windows [n, W]."""
        self._buf += pcm
        win_bytes = self.window_samples * 2
        n = len(self._buf) // win_bytes
        if n == 0:
            return np.zeros((0, self.window_samples), dtype=np.float32)
        raw = bytes(self._buf[: n * win_bytes])
        del self._buf[: n * win_bytes]
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) * np.float32(1.0 / 32768.0)
        return x.reshape(n, self.window_samples)

    def process(self, pcm: bytes) -> list[float]:
        probs: list[float] = []
        for window in self._take_windows(pcm):
            x = np.concatenate((self._context, window))[np.newaxis, :]
            out, self._state = self._vad._run(x, self._state, self.sample_rate)
            self._context = x[0, -self.context_samples :].copy()
            probs.append(float(out[0, 0]))
        return probs

    @property
    def buffered_samples(self) -> int:
        """Samples waiting for a full window (for the caller's timestamp bookkeeping)."""
        return len(self._buf) // 2
