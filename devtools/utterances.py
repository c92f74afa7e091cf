"""A fixed set of contact-centre caller utterances, synthesised with espeak-ng.

espeak-ng (not Piper, our own TTS) so the recogniser is never tested on the voice it will later
hear itself speak in. The words are spelled out the way a caller says them ("four seven two"),
so the references are what was spoken; `models.normalize.wer` normalises digits on both sides.
Synthesis is deterministic (espeak-ng is, for a fixed version, voice and speed) and cached as
22050 Hz WAV files keyed by a hash of everything that shapes the audio.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

from media.pcm import resample, telephone_channel

ESPEAK_RATE = 22050
RATE = 16000


@dataclass(frozen=True)
class Utterance:
    text: str  # the reference: exactly the words spoken
    pcm16k: bytes  # slin16 mono at 16 kHz

    @property
    def duration_s(self) -> float:
        return len(self.pcm16k) / 2 / RATE


@dataclass(frozen=True)
class _Spec:
    text: str
    voice: str
    speed: int  # words per minute


# Voices and speeds vary a little so one voice's quirks do not decide every result.
SPECS: tuple[_Spec, ...] = (
    _Spec("Hi, I'm calling about my bill.", "en-us", 165),
    _Spec("My account number is four seven two nine one eight three five.", "en-us", 155),
    _Spec("Yes, that's correct.", "en-gb", 160),
    _Spec("No, I don't think so.", "en-us+f3", 165),
    _Spec("Can I book an appointment for Tuesday at ten thirty?", "en-gb-x-rp", 160),
    _Spec("My phone number is five five five, one two three four.", "en-us+m3", 150),
    _Spec("My email is john dot smith at example dot com.", "en-us", 150),
    _Spec("I'd like to pay the remaining balance of two hundred and fifty dollars.", "en-gb", 170),
    _Spec("What time do you close on Saturday?", "en-us+f2", 160),
    _Spec("The delivery was supposed to arrive on the twenty first of March.", "en-us", 170),
    _Spec("Could you transfer me to a real person, please?", "en-gb-x-rp+m3", 165),
    _Spec("I need to cancel my order, it's number three oh two.", "en-us+f3", 155),
)


def default_cache_dir() -> Path:
    base = Path(os.environ.get("PHONEAGENT_CACHE", Path.home() / ".cache" / "phoneagent"))
    return base / "bench" / "utterances"


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return exe


def _espeak_version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("Data at")[0].strip()


def _read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected mono 16-bit WAV")
        return w.readframes(w.getnframes()), w.getframerate()


def synthesize(spec: _Spec, cache_dir: Path, exe: str, version: str) -> bytes:
    """One utterance as slin at 16 kHz; espeak runs only on a cache miss."""
    key = hashlib.sha256(f"{version}|{spec.voice}|{spec.speed}|{spec.text}".encode()).hexdigest()[:16]
    wav = cache_dir / f"{key}.wav"
    if not wav.is_file():
        tmp = wav.with_suffix(f".{os.getpid()}.tmp")
        ssml = ["-m"] if spec.text.startswith("<speak>") else []  # SSML: <break time="800ms"/> mid-sentence
        subprocess.run([exe, *ssml, "-v", spec.voice, "-s", str(spec.speed), "-w", str(tmp), spec.text], check=True, capture_output=True)
        tmp.replace(wav)  # atomic: parallel runs never read a half-written file
    pcm, rate = _read_wav(wav)
    if rate != ESPEAK_RATE:
        raise ValueError(f"{wav}: espeak-ng wrote {rate} Hz, expected {ESPEAK_RATE}")
    return resample(pcm, rate, RATE)


def synthesize_set(cache_dir: Path | None = None) -> list[Utterance]:
    """The whole fixed set, in order, at 16 kHz."""
    d = cache_dir or default_cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    exe = _espeak()
    version = _espeak_version(exe)
    return [Utterance(s.text, synthesize(s, d, exe, version)) for s in SPECS]


def telephone(u: Utterance, law: str = "ulaw") -> bytes:
    """What Asterisk hands us for this utterance from a PSTN caller: G.711 round trip, slin 8 kHz."""
    return resample(telephone_channel(u.pcm16k, RATE, law), RATE, 8000)


def say(text: str, voice: str = "en-us", speed: int = 160, cache_dir: Path | None = None) -> Utterance:
    """Any sentence, spoken by espeak-ng (cached like the fixed set): a scripted caller."""
    d = cache_dir or default_cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    exe = _espeak()
    return Utterance(text, synthesize(_Spec(text, voice, speed), d, exe, _espeak_version(exe)))
