"""PCM helpers: G.711 bit-exactness, resampling, tones and analysis."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import pcm

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16).tobytes()


def _audioop():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    return audioop


@pytest.mark.parametrize(
    ("ours_enc", "ours_dec", "ref_enc", "ref_dec"),
    [
        (pcm.ulaw_encode, pcm.ulaw_decode, "lin2ulaw", "ulaw2lin"),
        (pcm.alaw_encode, pcm.alaw_decode, "lin2alaw", "alaw2lin"),
    ],
)
def test_g711_bit_exact_with_reference_for_every_sample(ours_enc, ours_dec, ref_enc, ref_dec) -> None:  # type: ignore[no-untyped-def]
    ao = _audioop()
    assert ours_enc(ALL_SAMPLES) == getattr(ao, ref_enc)(ALL_SAMPLES, 2)
    every_code = bytes(range(256))
    assert ours_dec(every_code) == getattr(ao, ref_dec)(every_code, 2)


def test_g711_known_codes() -> None:
    assert pcm.ulaw_encode(b"\x00\x00") == b"\xff"  # mu-law zero
    assert pcm.alaw_encode(b"\x00\x00") == b"\xd5"  # A-law zero
    assert pcm.ulaw_decode(b"\x00") == (-32124).to_bytes(2, "little", signed=True)


def test_odd_length_rejected() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        pcm.ulaw_encode(b"\x00")


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (22050, 8000), (22050, 16000), (48000, 16000)])
def test_resample_keeps_frequency_and_duration(src: int, dst: int) -> None:
    x = pcm.tone(440.0, 500, src)
    y = pcm.resample(x, src, dst)
    assert abs(len(y) // 2 - dst // 2) <= 2
    assert pcm.dominant_frequency(y, dst) == pytest.approx(440.0, abs=2.0)


def test_stream_resampler_matches_one_shot_without_seams() -> None:
    x = pcm.tone(700.0, 1000, 22050)
    r = pcm.StreamResampler(22050, 16000)
    chunks = [x[i : i + 882] for i in range(0, len(x), 882)]  # 20 ms chunks
    out = b"".join(r.process(c) for c in chunks) + r.flush()
    assert abs(len(out) // 2 - 16000) <= 2
    y = pcm.to_array(out).astype(np.float64)
    # no clicks at chunk seams: sample-to-sample steps stay within a pure 700 Hz sine's slope
    max_step = 2 * np.pi * 700 / 16000 * 0.3 * 32767
    assert np.max(np.abs(np.diff(y[200:-200]))) < max_step * 1.1
    assert pcm.dominant_frequency(out, 16000) == pytest.approx(700.0, abs=2.0)


def test_same_rate_is_passthrough() -> None:
    x = pcm.tone(300.0, 20, 8000)
    assert pcm.resample(x, 8000, 8000) is x
    assert pcm.StreamResampler(8000, 8000).process(x) == x


def test_frame_maths() -> None:
    assert pcm.frame_bytes(16000, 20) == 640
    assert pcm.frame_bytes(8000, 20) == 320
    assert pcm.frame_bytes(8000, 30) == 480
    assert pcm.duration_ms(960, 16000) == 30.0
    assert pcm.silence(20, 16000) == bytes(640)


def test_levels() -> None:
    assert pcm.rms_dbfs(bytes(320)) == float("-inf")
    full = pcm.tone(1000.0, 100, 8000, amplitude=1.0)
    assert pcm.rms_dbfs(full) == pytest.approx(-3.01, abs=0.1)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_telephone_channel_band_limits_but_keeps_voice_band(law: str) -> None:
    voice = pcm.tone(1000.0, 300, 16000)
    out = pcm.telephone_channel(voice, 16000, law)
    assert pcm.dominant_frequency(out, 16000) == pytest.approx(1000.0, abs=3.0)
    high = pcm.tone(6000.0, 300, 16000)  # above the 4 kHz telephone band: removed
    assert pcm.rms_dbfs(pcm.telephone_channel(high, 16000, law)) < pcm.rms_dbfs(high) - 30


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400))
def test_ulaw_roundtrip_error_is_bounded(samples: list[int]) -> None:
    x = np.array(samples, dtype=np.int16)
    y = pcm.to_array(pcm.ulaw_decode(pcm.ulaw_encode(x.tobytes()))).astype(np.int32)
    err = np.abs(y - x.astype(np.int32))
    # mu-law quantisation step grows with magnitude: error stays under ~1/16 of the magnitude + 8 lsb
    assert np.all(err <= np.abs(x.astype(np.int32)) // 16 + 132)


def test_voiced_frames_and_talk_spurts() -> None:
    audio = pcm.tone(500.0, 200, 8000) + pcm.silence(300, 8000) + pcm.tone(500.0, 100, 8000) + pcm.silence(900, 8000) + pcm.tone(500.0, 60, 8000)
    starts = pcm.voiced_frames(audio, 8000)
    assert starts[:3] == pytest.approx([0.0, 0.02, 0.04]) and len(starts) == 10 + 5 + 3
    spurts = pcm.talk_spurts(audio, 8000, gap_s=0.5)
    assert [(round(a, 2), round(b, 2)) for a, b in spurts] == [(0.0, 0.6), (1.5, 1.56)]
    assert pcm.voiced_frames(pcm.silence(100, 8000), 8000) == [] and pcm.talk_spurts(b"", 8000, gap_s=1) == []
