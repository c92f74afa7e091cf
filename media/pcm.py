"""PCM helpers for telephone audio: frame maths, resampling, G.711, tones and analysis.

Everything here works on 16-bit little-endian mono signed-linear bytes ("slin"), the format
AudioSocket carries. Resampling uses soxr (a real polyphase resampler); G.711 is the ITU-T
table-free algorithm, vectorised with numpy because the stdlib `audioop` is deprecated and gone
in Python 3.13.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import soxr

SAMPLE_WIDTH = 2  # bytes per sample: 16-bit slin

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]


def frame_bytes(sample_rate: int, ms: float) -> int:
    """Bytes of slin audio in `ms` milliseconds at `sample_rate` (rounded to whole samples)."""
    return int(round(sample_rate * ms / 1000.0)) * SAMPLE_WIDTH


def duration_ms(n_bytes: int, sample_rate: int) -> float:
    """Duration of `n_bytes` of slin audio at `sample_rate`, in milliseconds."""
    return (n_bytes // SAMPLE_WIDTH) * 1000.0 / sample_rate


def to_array(pcm: bytes) -> Int16Array:
    """View slin bytes as int16 samples (copy-free where possible)."""
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"slin audio must have an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<i2").astype(np.int16, copy=False)


def to_bytes(samples: npt.NDArray[np.generic]) -> bytes:
    """Clip to int16 range and serialise as little-endian slin bytes."""
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        arr = np.clip(np.rint(arr), -32768, 32767).astype(np.int16)
    return arr.astype("<i2", copy=False).tobytes()


def silence(ms: float, sample_rate: int) -> bytes:
    return bytes(frame_bytes(sample_rate, ms))


def tone(freq_hz: float, ms: float, sample_rate: int, amplitude: float = 0.3, phase: float = 0.0) -> bytes:
    """A sine tone; `amplitude` is a fraction of full scale."""
    n = frame_bytes(sample_rate, ms) // SAMPLE_WIDTH
    t = (np.arange(n) / sample_rate) * 2.0 * math.pi * freq_hz + phase
    return to_bytes(np.sin(t) * amplitude * 32767.0)


def rms_dbfs(pcm: bytes) -> float:
    """RMS level relative to full scale; -inf for digital silence or empty input."""
    x = to_array(pcm).astype(np.float64)
    if x.size == 0:
        return float("-inf")
    rms = math.sqrt(float(np.mean(x * x)))
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else float("-inf")


def dominant_frequency(pcm: bytes, sample_rate: int) -> float:
    """Frequency (Hz) of the strongest spectral peak, refined by parabolic interpolation."""
    x = to_array(pcm).astype(np.float64)
    if x.size < 16:
        raise ValueError("need at least 16 samples to estimate a frequency")
    x = (x - x.mean()) * np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x))
    k = int(np.argmax(spectrum[1:])) + 1
    if 0 < k < spectrum.size - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        k_f = k + (0.5 * (a - c) / denom if denom != 0 else 0.0)
    else:
        k_f = float(k)
    return float(k_f * sample_rate / x.size)


# --- resampling -------------------------------------------------------------------------------


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """One-shot resample of a whole buffer (HQ soxr)."""
    if from_rate == to_rate:
        return pcm
    x = to_array(pcm)
    if x.size == 0:
        return b""
    return to_bytes(soxr.resample(x, from_rate, to_rate, quality="HQ"))


class StreamResampler:
    """Chunk-by-chunk resampler that keeps filter state across chunks (no clicks at seams).

    Use one per audio stream (e.g. one TTS reply); call `flush()` at the end to get the tail the
    filter still holds.
    """

    def __init__(self, from_rate: int, to_rate: int, quality: str = "HQ") -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream: soxr.ResampleStream | None = (
            None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality=quality)
        )

    def process(self, pcm: bytes) -> bytes:
        if self._stream is None:
            return pcm
        return to_bytes(self._stream.resample_chunk(to_array(pcm)))

    def flush(self) -> bytes:
        if self._stream is None:
            return b""
        return to_bytes(self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True))


# --- G.711 ------------------------------------------------------------------------------------

_ULAW_BIAS = 0x84


def ulaw_encode(pcm: bytes) -> bytes:
    """slin -> G.711 mu-law, bit-exact with the ITU-T/Sun reference (14-bit magnitudes)."""
    x = to_array(pcm).astype(np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    mag = np.minimum(np.where(x < 0, -x, x), 8159) + 0x21
    seg = np.floor(np.log2(mag)).astype(np.int32) - 5
    uval = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F))
    return ((uval ^ mask) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law -> slin."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return to_bytes(np.where(sign != 0, -mag, mag))


def alaw_encode(pcm: bytes) -> bytes:
    """slin16-bit -> G.711 A-law (even bits inverted with 0x55)."""
    x = to_array(pcm).astype(np.int32) >> 3  # A-law works on 13-bit magnitudes
    sign = np.where(x >= 0, 0x80, 0x00)
    mag = np.where(x >= 0, x, -x - 1)
    mag = np.minimum(mag, 0x0FFF)
    exponent = np.where(mag >= 32, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4, 0)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    code = (sign | (exponent << 4) | mantissa) ^ 0x55
    return code.astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law -> slin."""
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    mag = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return to_bytes(np.where(sign != 0, mag, -mag))


def line_noise(pcm: bytes, dbfs: float, rng: np.random.Generator) -> bytes:
    """`pcm` with white hiss at `dbfs` (RMS) added: a noisy line, before the codec."""
    x = to_array(pcm).astype(np.float64) + rng.normal(0.0, 32768 * 10 ** (dbfs / 20), len(pcm) // 2)
    return bytes(np.clip(x, -32768, 32767).astype("<i2").tobytes())


def telephone_channel(pcm: bytes, sample_rate: int, law: str = "ulaw") -> bytes:
    """Pass audio through an 8 kHz G.711 phone line and back to `sample_rate`.

    Resample to 8 kHz (which band-limits to the telephone band), encode and decode with G.711,
    resample back: what a caller's voice sounds like after the PSTN.
    """
    narrow = resample(pcm, sample_rate, 8000)
    if law == "ulaw":
        narrow = ulaw_decode(ulaw_encode(narrow))
    elif law == "alaw":
        narrow = alaw_decode(alaw_encode(narrow))
    else:
        raise ValueError(f"law must be 'ulaw' or 'alaw', got {law!r}")
    return resample(narrow, 8000, sample_rate)


def frame_levels_dbfs(pcm: bytes, sample_rate: int, frame_ms: float = 20.0) -> FloatArray:
    """RMS level (dBFS, -inf for digital silence) of each whole `frame_ms` frame, vectorised."""
    n = frame_bytes(sample_rate, frame_ms) // SAMPLE_WIDTH
    x = to_array(pcm).astype(np.float64)
    frames = x[: (x.size // n) * n].reshape(-1, n)
    rms = np.sqrt(np.mean(frames * frames, axis=1)) if frames.size else np.zeros(0)
    with np.errstate(divide="ignore"):
        return np.asarray(20.0 * np.log10(rms / 32768.0), dtype=np.float64)


def voiced_frames(pcm: bytes, sample_rate: int, *, min_dbfs: float = -40.0, frame_ms: float = 20.0) -> list[float]:
    """Start times (s) of the frames louder than `min_dbfs`: a level gate for clean recordings."""
    levels = frame_levels_dbfs(pcm, sample_rate, frame_ms)
    return [float(i) * frame_ms / 1000.0 for i in np.flatnonzero(levels > min_dbfs)]


def talk_spurts(pcm: bytes, sample_rate: int, *, gap_s: float, min_dbfs: float = -40.0, frame_ms: float = 20.0) -> list[tuple[float, float]]:
    """(start_s, end_s) of voiced frames merged across quiet gaps no longer than `gap_s`."""
    frame_s = frame_ms / 1000.0
    spurts: list[list[float]] = []
    for t in voiced_frames(pcm, sample_rate, min_dbfs=min_dbfs, frame_ms=frame_ms):
        if spurts and t - spurts[-1][1] <= gap_s:
            spurts[-1][1] = t + frame_s
        else:
            spurts.append([t, t + frame_s])
    return [(a, b) for a, b in spurts]


def tone_segments(pcm: bytes, sample_rate: int, win_ms: float = 40.0, min_dbfs: float = -35.0, tol_hz: float = 20.0) -> list[tuple[float, float, float]]:
    """Split audio into runs of one dominant frequency: [(start_ms, end_ms, hz), ...].

    Windows quieter than `min_dbfs` break runs. Used to check what a caller heard (greeting
    tones, echoes, beeps) in recordings.
    """
    n = frame_bytes(sample_rate, win_ms)
    runs: list[list[float]] = []
    for i in range(0, len(pcm) - n + 1, n):
        w = pcm[i : i + n]
        t = duration_ms(i, sample_rate)
        if rms_dbfs(w) < min_dbfs:
            continue
        f = dominant_frequency(w, sample_rate)
        if runs and abs(runs[-1][2] - f) <= tol_hz and abs(runs[-1][1] - t) < 1e-6:
            runs[-1][1] = t + win_ms
        else:
            runs.append([t, t + win_ms, f])
    return [(a, b, round(f, 1)) for a, b, f in runs]
