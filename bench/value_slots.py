"""Dates, amounts and emails asked for over the phone: how often slot capture hears the value
right the first time, before the read-back (phoneagent/dialog/spoken_values.py, slots.py,
capture.py), and how often the read-back exchange gets it within two or three caller turns.

The same voices and channels as bench.telephone_stt (four espeak-ng voices, and Piper joe reported
apart; clean 16 kHz and G.711 mu-law / A-law / mu-law with line noise at 8 kHz); whisper tiny.en
(bundled), beam 1 and 5. Per answer: "plain" is the value in the best text without the slot (no
prompt, one text); "slot" is what capture.py reads back (the answer recognised once per slot
prompt, n-best texts each, the first text that holds a value, surest prompt first). An email is
said in words first; after a no the agent asks for it spelled (AgentConfig.slot_spell), and the
caller spells it. A wrong first value is read back and refused by the caller, never stored. Then the
read-back exchange, up to three caller turns in all, decided by the dialog's own
`answer_to_read_back`: to a date read back with only the day (or only the month) wrong the
caller names that part ("No, the fifth."; the year alike), to anything else "No," and the whole
answer again, more slowly and fully ("Nineteen dollars and ninety nine cents." for "Nineteen
ninety nine."), as people say it when they were not understood; "ask again" gets that answer (recognised with the slot's prompt, as the dialog
does while a value is expected; a reply to a read-back is recognised plainly). A caller never
confirms a wrong value, so what fails is a value never heard right.

    python -m bench.value_slots        # prints the table, writes bench/results/value-slots-*.json
"""

from __future__ import annotations

import argparse
import calendar
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info, save_results
from bench.telephone_stt import CHANNELS, VOICES, channel, piper_speech, slot_transcript
from devtools.utterances import say
from models import catalog
from models.piper_tts import PiperTTS
from models.whisper import WhisperSTT
from phoneagent.dialog.capture import answer_to_read_back, heard_value
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.slots import Slot

TODAY = date(2026, 12, 2)  # a Wednesday: what "tomorrow" and year-less dates resolve against
# (what the caller says, the slot kind, the value the tool must get, how they say it again when
# it was misheard: fully and plainly, as people do when they were not understood)
ANSWERS: tuple[tuple[str, str, str, str], ...] = (
    ("Tomorrow, please.", "date", "2026-12-03", "Tomorrow, the third of December."),
    ("Next Tuesday.", "date", "2026-12-08", "Tuesday the eighth of December."),
    ("On Friday.", "date", "2026-12-04", "Friday the fourth of December."),
    ("The fifth of March.", "date", "2027-03-05", "The fifth of March."),
    ("June twenty first, twenty twenty seven.", "date", "2027-06-21", "The twenty first of June, twenty twenty seven."),
    ("The twelfth of January.", "date", "2027-01-12", "January the twelfth."),
    ("My date of birth is July fourth, nineteen eighty five.", "date", "1985-07-04", "July the fourth, nineteen eighty five."),
    ("Forty two dollars and fifty cents.", "amount", "42.50", "Forty two dollars and fifty cents."),
    ("Three hundred dollars.", "amount", "300.00", "Three hundred dollars."),
    ("Twelve dollars and five cents.", "amount", "12.05", "Twelve dollars and five cents."),
    ("One thousand two hundred and fifty dollars.", "amount", "1250.00", "One thousand, two hundred and fifty dollars."),
    ("Nineteen ninety nine.", "amount", "19.99", "Nineteen dollars and ninety nine cents."),
    # emails: said in words first; again, spelled, as the agent then asks (AgentConfig.slot_spell)
    ("My email is john dot smith at example dot com.", "email", "john.smith@example.com",
     "j o h n, dot, s m i t h, at example dot com."),
    ("It's anna dot lee at mail dot org.", "email", "anna.lee@mail.org", "a n n a, dot, l e e, at mail dot org."),
    ("Peter at hotmail dot com.", "email", "peter@hotmail.com", "p e t e r, at hotmail dot com."),
    ("m dot garcia seventy at yahoo dot com.", "email", "m.garcia70@yahoo.com", "m, dot, g a r c i a, seven zero, at yahoo dot com."),
)
KINDS = ("date", "amount", "email")
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_UNITS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
             "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth").split()
MAX_TRIES = 3


def day_words(day: int) -> str:
    """How a caller says a day of the month: "the fifth", "the twenty first", "the thirtieth"."""
    if day <= 20:
        return f"the {_ORDINALS[day - 1]}"
    return "the thirtieth" if day == 30 else f"the {'twenty' if day < 30 else 'thirty'} {_ORDINALS[day % 10 - 1]}"


def _under_100(n: int) -> str:
    if n < 20:
        return _UNITS[n - 1]
    return _TENS[n // 10 - 2] + (f" {_UNITS[n % 10 - 1]}" if n % 10 else "")


def year_words(year: int) -> str:
    """"nineteen eighty five", "twenty twenty seven", "twenty oh five"."""
    low = year % 100
    if year % 1000 == 0:
        return f"{_UNITS[year // 1000 - 1]} thousand"
    return f"{_under_100(year // 100)} {_under_100(low) if low >= 10 else f'oh {_UNITS[low - 1]}' if low else 'hundred'}"


def correction(kind: str, again: str, want: str, heard: str) -> str:
    """The caller's turn after a wrong read-back of `heard`: the one wrong part of a date (day,
    month or year), else "No," and the answer again as they say it when not understood."""
    if kind == "date" and len(heard) == len(want) == 10:
        same = [heard[:4] == want[:4], heard[5:7] == want[5:7], heard[8:] == want[8:]]
        if same == [True, True, False]:
            return f"No, {day_words(int(want[8:]))}."
        if same == [True, False, True]:
            return f"No, {calendar.month_name[int(want[5:7])]}."
        if same == [False, True, True]:
            return f"No, {year_words(int(want[:4]))}."
    return f"No, {again[0].lower()}{again[1:]}"


Speak = Callable[[str, bool], bytes]  # (text, more slowly) -> 16 kHz speech


def speakers(piper: PiperTTS) -> list[tuple[str, str, Speak]]:
    """(family, voice, speak): the espeak-ng voices, and Piper joe (a neural voice trained on a
    person's recordings; slower for a repeat: length scale 1.15)."""

    def espeak(voice: str, speed: int) -> Speak:
        return lambda text, slow: say(text, voice=voice, speed=int(speed * 0.85) if slow else speed).pcm16k

    slow_joe = piper.with_options(length_scale=1.15)

    def joe(text: str, slow: bool) -> bytes:
        return piper_speech(slow_joe if slow else piper, text)

    return [*(("espeak-ng", f"{v}@{sp}", espeak(v, sp)) for v, sp in VOICES), ("piper", "joe", joe)]


def exchange(stt: WhisperSTT, slot: Slot, again: str, want: str, first: str, speak: Speak, ch: str,
             rng: np.random.Generator, n_best: int) -> list[dict[str, Any]]:
    """The caller turns after a wrong first value, until the value read back is right (or
    MAX_TRIES turns in all); each entry: what was said, heard, the outcome and the value then."""
    turns: list[dict[str, Any]] = []
    value = first  # "" when nothing usable was heard: the agent asked again
    while len(turns) + 1 < MAX_TRIES and value != want:
        asked_again = not slot.valid(value)
        said = again if asked_again else correction(slot.kind, again, want, value)
        pcm, rate = channel(speak(said, True), ch, rng)
        if asked_again:
            best = slot_transcript(stt, slot, pcm, rate, n_best)
            outcome, value = "asked again", heard_value(slot, best.text, best.alternatives)
        else:
            best = stt.transcribe(pcm, rate)
            outcome, value = answer_to_read_back(slot, value, best.text, best.alternatives)
        turns.append({"said": said, "heard": best.text, "outcome": outcome, "value": value})
    return turns


def score(stt: WhisperSTT, voices: list[tuple[str, str, Speak]]) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    n_best = AgentConfig().slot_hypotheses
    rows: list[dict[str, Any]] = []
    for family, voice, speak in voices:
        for text, kind, value, again in ANSWERS:
            slot = replace(Slot("v", kind, currency="USD" if kind == "amount" else ""), today=TODAY)  # type: ignore[arg-type]
            speech = speak(text, False)
            for ch in CHANNELS:
                pcm, rate = channel(speech, ch, rng)
                plain = stt.transcribe(pcm, rate).text
                t0 = time.perf_counter()
                best = slot_transcript(stt, slot, pcm, rate, n_best)
                ms = (time.perf_counter() - t0) * 1000
                heard = heard_value(slot, best.text, best.alternatives)
                later = exchange(stt, slot, again, value, heard, speak, ch, rng, n_best)
                final = later[-1]["value"] if later else heard
                rows.append({"family": family, "voice": voice, "channel": ch, "kind": kind, "said": text, "want": value,
                             "plain": slot.capture(plain), "plain_text": plain, "slot": heard, "heard": best.text,
                             "alternatives": list(best.alternatives), "ms": round(ms, 1), "exchange": later,
                             "confirmed_in": 1 + len(later) if final == value else None})
    table: dict[str, Any] = {}
    for family in dict.fromkeys(f for f, _, _ in voices):
        for kind in KINDS:
            for ch in CHANNELS:
                mine = [r for r in rows if r["family"] == family and r["kind"] == kind and r["channel"] == ch]
                table[f"{kind} {family} {ch}"] = {
                    "plain": f"{sum(r['plain'] == r['want'] for r in mine)}/{len(mine)}",
                    "slot": f"{sum(r['slot'] == r['want'] for r in mine)}/{len(mine)}",
                    **{f"within_{k}": f"{sum(1 for r in mine if r['confirmed_in'] and r['confirmed_in'] <= k)}/{len(mine)}"
                       for k in range(2, MAX_TRIES + 1)},
                    "ms_p50": round(float(np.percentile([r["ms"] for r in mine], 50)), 1)}
    return {"table": table, "rows": rows, "hypotheses": n_best}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    results = {}
    voices = speakers(PiperTTS(*catalog.piper_joe()))
    for beam in (1, 5):
        stt = WhisperSTT(catalog.whisper_tiny_en(), device="cpu", cpu_threads=2, beam_size=beam, language="en")
        stt.warmup()
        results[f"whisper tiny.en, beam {beam}"] = score(stt, voices)
    path = save_results(args.out, "value-slots", {"machine": info, "device": "cpu", "today": TODAY.isoformat(),
                                                  "answers": len(ANSWERS), "voices": [v for _, v, _ in voices], "recognisers": results})
    print(f"\ndates, amounts and emails asked for: {len(ANSWERS)} answers x {len(VOICES)} espeak-ng voices and Piper joe, "
          f"right the first time, on {info['cpu']}")
    print("  then confirmed within 2 and 3 caller turns of the read-back exchange")
    print(f"  {'recogniser':26} {'slot, voices, channel':32} {'plain':>7} {'slot':>7} {'2 turns':>8} {'3 turns':>8} {'ms p50':>7}")
    for name, r in results.items():
        for row, c in r["table"].items():
            print(f"  {name:26} {row:32} {c['plain']:>7} {c['slot']:>7} {c['within_2']:>8} {c['within_3']:>8} {c['ms_p50']:>7}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
