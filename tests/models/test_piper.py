"""Piper TTS with the bundled joe voice: clause streaming, rates, loudness, cancel, seams, errors."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import soxr

from media import pcm
from models import catalog
from models.base import AudioChunk, CancelToken, Cancelled, ModelFileError
from models.piper_tts import PiperTTS, soft_limit, speech_level_dbfs

THREE = "Thanks for calling Acme Dental, how can I help you today? We are open until five."
THREE_CLAUSES = ["Thanks for calling Acme Dental,", "how can I help you today?", "We are open until five."]


@pytest.fixture(scope="module")
def tts() -> PiperTTS:
    return PiperTTS()


def _level(chunk: AudioChunk) -> float:
    x = pcm.to_array(chunk.pcm).astype(np.float32) / 32768.0
    return speech_level_dbfs(x, chunk.sample_rate)


# --- synthesis -----------------------------------------------------------------------------


def test_info(tts: PiperTTS) -> None:
    assert tts.info.role == "tts" and tts.info.name == "piper-joe-medium" and tts.info.streaming
    assert {8000, 16000, 22050, 24000, 48000} <= set(tts.info.sample_rates)
    assert tts.native_rate == 22050


def test_it_speaks_what_it_is_given_in_one_run(tts: PiperTTS, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dialog's chunker is the one clause splitter: TTS never re-splits what it gets."""
    rendered: list[str] = []
    real = tts._render

    def spy(clause: str) -> np.ndarray:
        rendered.append(clause)
        return real(clause)

    monkeypatch.setattr(tts, "_render", spy)
    chunks = list(tts.synthesize("  " + THREE + "\n", 8000))
    assert rendered == [THREE] and [c.text for c in chunks] == [THREE]
    assert chunks[0].sample_rate == 8000 and len(chunks[0].pcm) > 3 * 16000  # > 3 s of audio


def test_length_matches_rate(tts: PiperTTS) -> None:
    steady = tts.with_options(noise_w_scale=0.0)  # durations become deterministic
    text = "Sure, one moment please, let me look that up for you."
    native = sum(len(c.pcm) // 2 for c in steady.synthesize(text, 22050))
    lengths = {rate: sum(len(c.pcm) // 2 for c in steady.synthesize(text, rate)) for rate in (8000, 16000, 24000, 48000)}
    for rate, got in lengths.items():
        assert abs(got - native * rate / 22050) <= 3, (rate, got, native)
    assert abs(lengths[16000] - 2 * lengths[8000]) <= 4


def test_loudness_consistent_no_clipping(tts: PiperTTS) -> None:
    clauses = ["Hello.", *THREE_CLAUSES, "Is there anything else?", "Goodbye!"]
    chunks = [c for clause in clauses for c in tts.synthesize(clause, 8000)]
    assert len(chunks) == 6
    levels = [_level(c) for c in chunks]
    assert max(levels) - min(levels) < 3.0, levels
    assert all(abs(lv - tts.target_dbfs) < 2.0 for lv in levels), levels
    rms = [pcm.rms_dbfs(c.pcm) for c in chunks]
    assert max(rms) - min(rms) < 6.0, rms
    peak = max(int(np.abs(pcm.to_array(c.pcm).astype(np.int32)).max()) for c in chunks)
    assert 8000 < peak <= 0.99 * 32768  # limited: never full scale, even after resampling


def test_loudness_same_across_replies_and_rates(tts: PiperTTS) -> None:
    a = [_level(c) for c in tts.synthesize("Let me check the calendar for you.", 16000)]
    b = [_level(c) for c in tts.synthesize("OK.", 8000)]
    assert abs(a[0] - b[0]) < 3.0


def test_cancel_during_clause_drops_it(tts: PiperTTS, monkeypatch: pytest.MonkeyPatch) -> None:
    token = CancelToken()
    real = tts._render

    def cancel_while_rendering(clause: str) -> np.ndarray:
        out = real(clause)
        token.cancel()
        return out

    monkeypatch.setattr(tts, "_render", cancel_while_rendering)
    with pytest.raises(Cancelled):
        next(tts.synthesize(THREE, 8000, cancel=token))


def test_cancelled_before_start(tts: PiperTTS) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        list(tts.synthesize("Hello there.", 8000, cancel=token))


def _sweep(n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    return (0.5 * np.sin(2 * np.pi * (300 * t + 400 * t * t))).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_resampling_is_one_continuous_pass(tts: PiperTTS, monkeypatch: pytest.MonkeyPatch, rate: int) -> None:
    """A clause's audio is one clean resample of what the voice rendered, tail included."""
    signal = _sweep(22050, 22050)  # 1 s chirp, cut mid-waveform
    monkeypatch.setattr(tts, "_render", lambda clause: signal)
    chunks = list(tts.synthesize("One two three four, five six seven eight.", rate))
    assert len(chunks) == 1
    got = pcm.to_array(chunks[0].pcm).astype(np.float64)
    want = soxr.resample((signal * 32767).astype(np.int16), 22050, rate, quality="HQ").astype(np.float64)
    assert abs(len(got) - len(want)) <= 2
    n = min(len(got), len(want))
    assert np.max(np.abs(got[:n] - want[:n])) < 0.01 * 32768
    assert np.max(np.abs(np.diff(got))) <= 1.05 * np.max(np.abs(np.diff(want)))


def test_clauses_start_and_end_quietly(tts: PiperTTS) -> None:
    """Clauses are separate runs played back to back: no click where one meets the next."""
    for clause in THREE_CLAUSES:
        (chunk,) = tts.synthesize(clause, 8000)
        audio = np.abs(pcm.to_array(chunk.pcm).astype(np.int32))
        edge = 40  # 5 ms at 8 kHz
        assert audio[:edge].max() < 0.1 * audio.max() and audio[-edge:].max() < 0.1 * audio.max(), clause


def _edges_ms(chunk: AudioChunk) -> tuple[float, float]:
    """Silence before the first and after the last 5 ms frame within 40 dB of the loudest."""
    levels = pcm.frame_levels_dbfs(chunk.pcm, chunk.sample_rate, 5.0)
    voiced = np.flatnonzero(levels >= levels.max() - 40.0)
    return float(voiced[0] * 5), float((len(levels) - 1 - voiced[-1]) * 5)


def test_no_dead_air_before_a_clause_and_a_clause_cut_mid_sentence_runs_on(tts: PiperTTS) -> None:
    """The voice renders 40-70 ms of silence before every clause and a sentence's pause after
    it: the first is time a waiting caller hears nothing, the second a gap inside a sentence
    when the chunker cut it at a word ("I'll close at" | "five on Saturday.")."""
    steady = tts.with_options(noise_w_scale=0.0)
    for clause in ("I'll close at", "Sure.", "Your order", "We're open from"):
        (chunk,) = steady.synthesize(clause, 8000)
        lead, tail = _edges_ms(chunk)
        assert lead <= 20.0, (clause, lead)
        assert tail <= 100.0 if clause[-1].isalnum() else tail >= 120.0, (clause, tail)
    (whole,) = steady.synthesize("I'll close at five.", 8000)
    assert _edges_ms(whole)[1] >= 120.0  # a sentence keeps its pause


def test_concurrent_replies(tts: PiperTTS) -> None:
    results: dict[int, list[AudioChunk]] = {}

    def work(i: int) -> None:
        results[i] = list(tts.synthesize(f"Reply number {i}, spoken from a thread.", 8000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 2]
    assert all(chunks and sum(len(c.pcm) for c in chunks) > 8000 for chunks in results.values())


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_yields_nothing(tts: PiperTTS, text: str) -> None:
    assert list(tts.synthesize(text, 8000)) == []


@pytest.mark.parametrize("text", ["...", "—", "?!", '""'])
def test_punctuation_only_yields_nothing(tts: PiperTTS, text: str) -> None:
    assert list(tts.synthesize(text, 8000)) == []


def test_bad_arguments_fail_at_call(tts: PiperTTS) -> None:
    with pytest.raises(TypeError):
        tts.synthesize(None, 8000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample rate"):
        tts.synthesize("hello", 11025)


def test_soft_limit() -> None:
    x = np.linspace(-4.0, 4.0, 10001, dtype=np.float32)
    y = soft_limit(x)
    assert np.all(np.abs(y) < 0.89 + 1e-6)
    assert np.all(np.diff(y) >= 0)  # monotonic: no fold-over distortion
    small = np.abs(x) <= 0.7
    assert np.array_equal(y[small], x[small])


# --- bad files -----------------------------------------------------------------------------


def test_missing_model(tmp_path: Path) -> None:
    path = tmp_path / "missing.onnx"
    with pytest.raises(ModelFileError, match=str(path)):
        PiperTTS(path, tmp_path / "missing.onnx.json")


def test_missing_config(tmp_path: Path) -> None:
    model, _ = catalog.piper_joe()
    cfg = tmp_path / "nope.json"
    with pytest.raises(ModelFileError, match=str(cfg)):
        PiperTTS(model, cfg)


@pytest.mark.parametrize("content", ["{not json", '{"audio": {}}', "[]"])
def test_corrupt_config(tmp_path: Path, content: str) -> None:
    model, _ = catalog.piper_joe()
    cfg = tmp_path / "bad.json"
    cfg.write_text(content)
    with pytest.raises(ModelFileError, match=str(cfg)):
        PiperTTS(model, cfg)


def test_corrupt_model(tmp_path: Path) -> None:
    _, cfg = catalog.piper_joe()
    model = tmp_path / "voice.onnx"
    model.write_bytes(np.random.default_rng(4).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    shutil.copy(cfg, tmp_path / "voice.onnx.json")
    with pytest.raises(ModelFileError, match=str(model)):
        PiperTTS(model)


def test_the_session_keeps_no_plan_per_sentence_shape(tts: PiperTTS) -> None:
    """onnxruntime's memory pattern caches an allocation plan per input shape; every sentence is
    a new shape, so with it on a service's RSS grew without end (bench/memory.py)."""
    opts = tts._loaded.voice.session.get_session_options()
    assert opts.enable_mem_pattern is False and opts.enable_cpu_mem_arena is True
