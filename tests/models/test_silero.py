"""Silero VAD on onnxruntime with the bundled weights: detection, windowing, batching, errors."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from media import pcm
from models.base import ModelFileError
from models.silero import SileroStream, SileroVAD

TEXT = "Hello, I would like to book an appointment for next Tuesday afternoon, please."
LEAD_MS = 600


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


@pytest.fixture(scope="module")
def speech_22k(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """Real speech: espeak-ng if installed, else the bundled Piper voice."""
    if shutil.which("espeak-ng"):
        out = tmp_path_factory.mktemp("speech") / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(out), TEXT], check=True, capture_output=True)
        with wave.open(str(out)) as w:
            return w.readframes(w.getnframes()), w.getframerate()
    from models.piper_tts import PiperTTS

    tts = PiperTTS(warmup=False)
    return b"".join(c.pcm for c in tts.synthesize(TEXT, 22050)), 22050


def _padded(speech: tuple[bytes, int], rate: int) -> bytes:
    raw, src_rate = speech
    return pcm.silence(LEAD_MS, rate) + pcm.resample(raw, src_rate, rate) + pcm.silence(LEAD_MS, rate)


def _loud_windows(audio: bytes, window: int) -> np.ndarray:
    n = len(audio) // (2 * window)
    return np.array([pcm.rms_dbfs(audio[i * 2 * window : (i + 1) * 2 * window]) > -35.0 for i in range(n)])


def test_info(vad: SileroVAD) -> None:
    assert vad.info.role == "vad" and vad.info.name == "silero-vad"
    assert vad.info.sample_rates == (8000, 16000) and vad.info.batching
    assert vad.info.device in ("cpu", "cuda")


@pytest.mark.parametrize(("rate", "window"), [(8000, 256), (16000, 512)])
def test_window_geometry(vad: SileroVAD, rate: int, window: int) -> None:
    s = vad.stream(rate)
    assert s.window_samples == window and s.window_ms == pytest.approx(32.0)


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("channel", ["clean", "ulaw", "alaw"])
def test_speech_high_silence_low(vad: SileroVAD, speech_22k: tuple[bytes, int], rate: int, channel: str) -> None:
    audio = _padded(speech_22k, rate)
    if channel != "clean":
        audio = pcm.telephone_channel(audio, rate, law=channel)
    s = vad.stream(rate)
    probs = np.array(s.process(audio))
    assert len(probs) == len(audio) // 2 // s.window_samples
    loud = _loud_windows(audio, s.window_samples)
    assert probs[loud].mean() > 0.7, probs[loud]
    assert probs.max() > 0.9
    lead = int(LEAD_MS / s.window_ms) - 2
    assert probs[:lead].max() < 0.1


@pytest.mark.parametrize("rate", [8000, 16000])
def test_noise_and_tone_low(vad: SileroVAD, rate: int) -> None:
    rng = np.random.default_rng(1)
    noise = pcm.to_bytes(rng.normal(0.0, 0.03 * 32768, rate * 2))
    hum = pcm.tone(440, 2000, rate, amplitude=0.3)
    for audio in (noise, hum, pcm.silence(2000, rate)):
        probs = vad.stream(rate).process(audio)
        assert max(probs) < 0.3


@pytest.mark.parametrize("chunk_bytes", [1, 2, 100, 318, 1023, 1024, 5000])
def test_any_chunk_size_same_windows(vad: SileroVAD, speech_22k: tuple[bytes, int], chunk_bytes: int) -> None:
    audio = _padded(speech_22k, 16000)[: 16000 * 2 * 2]  # 2 s keeps the 1-byte case quick
    whole = vad.stream(16000).process(audio)
    s = vad.stream(16000)
    pieces: list[float] = []
    for i in range(0, len(audio), chunk_bytes):
        pieces += s.process(audio[i : i + chunk_bytes])
    assert len(pieces) == len(whole) == len(audio) // 1024
    assert pieces == pytest.approx(whole, abs=1e-6)
    assert s.buffered_samples == (len(audio) // 2) % 512


def test_short_chunk_returns_nothing_until_a_window(vad: SileroVAD) -> None:
    s = vad.stream(8000)
    assert s.process(pcm.silence(20, 8000)) == []  # 160 samples < 256
    assert len(s.process(pcm.silence(20, 8000))) == 1  # 320 -> one window, 64 left
    assert s.buffered_samples == 64


def test_batch_equals_sequential(vad: SileroVAD, speech_22k: tuple[bytes, int]) -> None:
    a16 = _padded(speech_22k, 16000)
    a8 = _padded(speech_22k, 8000)
    rng = np.random.default_rng(2)
    n16 = pcm.to_bytes(rng.normal(0.0, 2000.0, len(a16) // 2))
    sources = [(16000, a16), (8000, a8), (16000, n16), (16000, a16[3000:])]
    seq = [vad.stream(r) for r, _ in sources]
    bat = [vad.stream(r) for r, _ in sources]
    sizes = [640, 320, 1100, 2048]  # 20 ms frames and odd sizes: streams advance unevenly
    seq_out: list[list[float]] = [[] for _ in sources]
    bat_out: list[list[float]] = [[] for _ in sources]
    rounds = max(len(a) // sizes[i] + 1 for i, (_, a) in enumerate(sources))
    for r in range(rounds):
        chunks = [a[r * sizes[i] : (r + 1) * sizes[i]] for i, (_, a) in enumerate(sources)]
        for i, s in enumerate(seq):
            seq_out[i] += s.process(chunks[i])
        for i, got in enumerate(vad.process_batch(bat, chunks)):
            bat_out[i] += got
    for a, b in zip(seq_out, bat_out):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert max(bat_out[0]) > 0.9 and max(bat_out[2]) < 0.3


def test_batch_rejects_bad_arguments(vad: SileroVAD) -> None:
    s = vad.stream(16000)
    with pytest.raises(ValueError, match="twice"):
        vad.process_batch([s, s], [b"", b""])
    with pytest.raises(ValueError, match="2 streams but 1"):
        vad.process_batch([s, vad.stream(16000)], [b""])
    other = SileroVAD()
    with pytest.raises(ValueError, match="another"):
        vad.process_batch([other.stream(16000)], [b""])
    assert vad.process_batch([], []) == []


def test_reset_forgets_state(vad: SileroVAD, speech_22k: tuple[bytes, int]) -> None:
    audio = _padded(speech_22k, 16000)
    probe = audio[len(audio) // 2 : len(audio) // 2 + 16000]
    fresh = vad.stream(16000).process(probe)
    s = vad.stream(16000)
    s.process(audio[: len(audio) // 2] + b"\x01\x00\x02")  # leaves a partial window buffered
    assert s.process(probe) != pytest.approx(fresh, abs=1e-6)
    s.process(audio[: len(audio) // 3])
    s.reset()
    assert s.buffered_samples == 0
    assert s.process(probe) == pytest.approx(fresh, abs=1e-6)


@pytest.mark.parametrize("rate", [0, 11025, 22050, 44100, 48000])
def test_bad_rate(vad: SileroVAD, rate: int) -> None:
    with pytest.raises(ValueError, match="8000 or 16000"):
        vad.stream(rate)


def test_stream_type(vad: SileroVAD) -> None:
    assert isinstance(vad.stream(16000), SileroStream)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelFileError, match=str(path)):
        SileroVAD(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match=str(path)):
        SileroVAD(path)


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFileError, match=str(path)) as info:
        SileroVAD(path)
    assert "corrupt" in str(info.value)
