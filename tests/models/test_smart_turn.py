"""The smart-turn v3.2 end-of-turn model, for real: features as it was trained on, verdicts on
turns whose answer is not in doubt, bad files refused with their name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devtools.utterances import say
from media.pcm import resample, telephone_channel, voiced_frames
from models import catalog
from models.base import ModelFileError
from models.smart_turn import SmartTurn


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    m = SmartTurn()
    m.warmup()
    return m


def phone(text: str, voice: str) -> bytes:
    """What Asterisk hands over: G.711 mu-law, slin 8 kHz."""
    return resample(telephone_channel(say(text, voice=voice).pcm16k, 16000), 16000, 8000)


def test_the_features_are_whisper_log_mel_of_the_last_8_seconds(model: SmartTurn) -> None:
    speech = say("What time do you close on Saturday?").pcm16k
    feats = model.features(speech, 16000)
    assert feats.shape == (80, 800) and feats.dtype == np.float32
    assert -1.5 <= float(feats.min()) and float(feats.max()) <= 2.0  # (log10 + 4) / 4, clamped 8 below the max
    # Zero padding goes in front: the speech sits at the end of the window, where the model looks.
    loud = feats.mean(axis=0)
    assert loud[-200:].mean() > loud[:200].mean() + 0.3
    long = model.features(bytes(16000 * 2 * 10) + speech, 16000)  # 10 s of silence first: only the last 8 s count
    assert np.allclose(long, model.features(bytes(16000 * 2 * 8) + speech, 16000), atol=1e-5)


@pytest.mark.parametrize("voice", ["en-us", "en-gb", "en-us+f3"])
def test_a_finished_question_scores_complete(model: SmartTurn, voice: str) -> None:
    assert model.probability(phone("What time do you close on Saturday?", voice), 8000) > 0.8


@pytest.mark.parametrize("voice", ["en-us", "en-us+f3"])
def test_a_sentence_broken_off_after_because_scores_incomplete(model: SmartTurn, voice: str) -> None:
    """At 0.1-0.3 s into the pause after "because" (SSML break: the intonation stays open).

    On espeak's voices the model is decisive only on some broken-off sentences (README: it does
    not beat the fixed silence on them). This one scored ~0.01 on both voices here; "I want
    to ..." swung between 0.08 and 0.9 with 50 ms more pause, and flipped between machines, so
    it is not used; en-gb scored 0.1-0.9 on this one."""
    pcm = phone('<speak>I was calling because <break time="1000ms"/> my bill is wrong.</speak>', voice)
    voiced = voiced_frames(pcm, 8000)
    pause = next(a for a, b in zip(voiced, voiced[1:]) if b - a > 0.3) + 0.02  # the end of "because"
    done = model.probability(phone("What time do you close on Saturday?", voice), 8000)
    for s in (0.1, 0.2, 0.3):
        broken = model.probability(pcm[: int((pause + s) * 8000) * 2], 8000)
        assert broken < 0.35 and done - broken > 0.5, (s, done, broken)


def test_the_bundled_file_is_pinned_and_a_wrong_file_is_refused(tmp_path: Path) -> None:
    assert catalog.smart_turn_onnx().stat().st_size == 8_679_182
    bad = tmp_path / "smart-turn.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelFileError, match="smart-turn"):
        SmartTurn(bad)
    with pytest.raises(ModelFileError, match="not a smart-turn v3 model"):
        SmartTurn(catalog.silero_vad_onnx())
