"""Dates and amounts asked for over the phone: how often slot capture hears the value right the
first time, before the read-back (phoneagent/dialog/spoken_values.py, slots.py, capture.py).

The same voices and channels as bench.telephone_stt (four espeak-ng voices, clean 16 kHz and
G.711 mu-law / A-law / mu-law with line noise at 8 kHz); whisper tiny.en (bundled), beam 1 and 5.
Per answer: "plain" is the value in the best text without the slot (no prompt, one text);
"slot" is what capture.py reads back (the slot's prompt, n-best texts, the first that holds a
value). A wrong first value is read back and refused by the caller, never stored: this measures
how often the caller has to say it twice.

    python -m bench.value_slots        # prints the table, writes bench/results/value-slots-*.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info, save_results
from bench.telephone_stt import CHANNELS, VOICES, channel
from devtools.utterances import say
from models import catalog
from models.whisper import WhisperSTT
from phoneagent.dialog.capture import heard_value
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.slots import Slot

TODAY = date(2026, 12, 2)  # a Wednesday: what "tomorrow" and year-less dates resolve against
# (what the caller says, the slot kind, the value the tool must get)
ANSWERS: tuple[tuple[str, str, str], ...] = (
    ("Tomorrow, please.", "date", "2026-12-03"),
    ("Next Tuesday.", "date", "2026-12-08"),
    ("On Friday.", "date", "2026-12-04"),
    ("The fifth of March.", "date", "2027-03-05"),
    ("June twenty first, twenty twenty seven.", "date", "2027-06-21"),
    ("The twelfth of January.", "date", "2027-01-12"),
    ("My date of birth is July fourth, nineteen eighty five.", "date", "1985-07-04"),
    ("Forty two dollars and fifty cents.", "amount", "42.50"),
    ("Three hundred dollars.", "amount", "300.00"),
    ("Twelve dollars and five cents.", "amount", "12.05"),
    ("One thousand two hundred and fifty dollars.", "amount", "1250.00"),
    ("Nineteen ninety nine.", "amount", "19.99"),
)


def score(stt: WhisperSTT) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    n_best = AgentConfig().slot_hypotheses
    rows: list[dict[str, Any]] = []
    for voice, speed in VOICES:
        for text, kind, value in ANSWERS:
            slot = replace(Slot("v", kind, currency="USD" if kind == "amount" else ""), today=TODAY)  # type: ignore[arg-type]
            speech = say(text, voice=voice, speed=speed).pcm16k
            for ch in CHANNELS:
                pcm, rate = channel(speech, ch, rng)
                plain = stt.transcribe(pcm, rate).text
                t0 = time.perf_counter()
                best = stt.transcribe(pcm, rate, prompt=slot.stt_prompt, hypotheses=n_best, repeats=True)
                ms = (time.perf_counter() - t0) * 1000
                heard = heard_value(slot, best.text, best.alternatives)
                rows.append({"voice": f"{voice}@{speed}", "channel": ch, "kind": kind, "said": text, "want": value,
                             "plain": slot.capture(plain), "plain_text": plain, "slot": heard, "heard": best.text,
                             "alternatives": list(best.alternatives), "ms": round(ms, 1)})
    table: dict[str, Any] = {}
    for kind in ("date", "amount"):
        for ch in CHANNELS:
            mine = [r for r in rows if r["kind"] == kind and r["channel"] == ch]
            table[f"{kind} {ch}"] = {"plain": f"{sum(r['plain'] == r['want'] for r in mine)}/{len(mine)}",
                                     "slot": f"{sum(r['slot'] == r['want'] for r in mine)}/{len(mine)}",
                                     "ms_p50": round(float(np.percentile([r["ms"] for r in mine], 50)), 1)}
    return {"table": table, "rows": rows, "hypotheses": n_best}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    results = {}
    for beam in (1, 5):
        stt = WhisperSTT(catalog.whisper_tiny_en(), device="cpu", cpu_threads=2, beam_size=beam, language="en")
        stt.warmup()
        results[f"whisper tiny.en, beam {beam}"] = score(stt)
    path = save_results(args.out, "value-slots", {"machine": info, "device": "cpu", "today": TODAY.isoformat(),
                                                  "answers": len(ANSWERS), "voices": len(VOICES), "recognisers": results})
    print(f"\ndates and amounts asked for: {len(ANSWERS)} answers x {len(VOICES)} espeak-ng voices, right the first time, on {info['cpu']}")
    print(f"  {'recogniser':26} {'slot, channel':22} {'plain':>7} {'slot':>7} {'ms p50':>7}")
    for name, r in results.items():
        for row, c in r["table"].items():
            print(f"  {name:26} {row:22} {c['plain']:>7} {c['slot']:>7} {c['ms_p50']:>7}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
