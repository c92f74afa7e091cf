"""Acknowledgement or interruption: how often the words decide right on the phone channel.

Short caller utterances spoken over the agent ("mm hmm", "yeah", "okay sure"; "no", "stop",
"wait", "hold on"), by several espeak-ng voices and rates, through G.711 mu-law and A-law at
8 kHz (and with mild line noise), transcribed by the bundled whisper tiny.en as the dialog does
(with and without a decoder prompt of acknowledgements, `PROMPT`) and judged by
`is_backchannel`. An acknowledgement judged as one lets the agent carry on; an interruption
judged as one stops it. Six policies: decoder prompt or none, and an empty transcript taken as
an acknowledgement (a hum whisper could not place), as an interruption, or judged by the words
whisper withheld as "not speech" (`Transcript.withheld`; none: an interruption). The rule that picks
the dialog's policy: fewest interruptions missed (a caller who said "stop" and was ignored is
worse than an agent that paused for an "mm-hmm"), then most acknowledgements kept.

    python -m bench.backchannels            # prints the table, writes bench/results/
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info, save_results
from devtools.utterances import say
from media.pcm import line_noise, telephone_channel
from models import catalog
from models.whisper import WhisperSTT
from phoneagent.dialog.backchannel import is_backchannel

ACKNOWLEDGEMENTS = ("mm hmm", "uh huh", "yeah", "okay", "right", "yes", "I see", "yeah yeah", "okay sure", "all right")
INTERRUPTIONS = ("no", "stop", "wait", "no no", "hold on", "what?", "sorry", "excuse me", "no thanks", "that's wrong")
VOICES = (("en-us", 160), ("en-gb", 140), ("en-us+f3", 180), ("en-us+m7", 150), ("en-gb+f2", 170))
CHANNELS = ("ulaw", "alaw", "ulaw+noise")
# The interruptions are in it so that whisper does not hear every short word as an "mm-hmm".
PROMPT = "Mm-hmm. Uh-huh. Yeah. Okay. No. Wait. Stop."
EMPTY = ("acknowledgement", "interruption", "withheld words")  # what an empty transcript counts as


def channel(pcm16k: bytes, name: str, rng: np.random.Generator) -> bytes:
    law, _, noise = name.partition("+")
    return telephone_channel(line_noise(pcm16k, -45, rng) if noise else pcm16k, 16000, law)


def transcribe_all(stt: WhisperSTT, prompt: str | None) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    rows: list[dict[str, Any]] = []
    for voice, speed in VOICES:
        for words in ACKNOWLEDGEMENTS + INTERRUPTIONS:
            utt = say(words, voice=voice, speed=speed)
            for ch in CHANNELS:
                t0 = time.perf_counter()
                tr = stt.transcribe(channel(utt.pcm16k, ch, rng), 16000, prompt=prompt)
                ms = (time.perf_counter() - t0) * 1000
                rows.append({"words": words, "voice": f"{voice}@{speed}", "channel": ch, "heard": tr.normalized.strip(),
                             "withheld": tr.withheld,
                             "acknowledgement": words in ACKNOWLEDGEMENTS, "stt_ms": round(ms, 1)})
    return rows


def acknowledged(row: dict[str, Any], empty: str) -> bool:
    """The dialog's decision (dialog/turns.py `_acknowledged`) under one empty-transcript policy."""
    if row["heard"]:
        return is_backchannel(row["heard"], "en")
    if empty == "withheld words":
        return bool(row["withheld"]) and is_backchannel(row["withheld"], "en")
    return empty == "acknowledgement"


def judge(rows: list[dict[str, Any]], prompt: str | None, empty: str) -> dict[str, Any]:
    rows = [{**r, "right": acknowledged(r, empty) == r["acknowledgement"]} for r in rows]
    acks = [r for r in rows if r["acknowledgement"]]
    stops = [r for r in rows if not r["acknowledgement"]]
    return {
        "prompt": prompt,
        "empty_transcript": empty,
        "acknowledgements_kept": f"{sum(r['right'] for r in acks)}/{len(acks)}",
        "interruptions_stopped": f"{sum(r['right'] for r in stops)}/{len(stops)}",
        "by_channel": {ch: {"kept": sum(r["right"] for r in acks if r["channel"] == ch), "of": sum(1 for r in acks if r["channel"] == ch),
                            "stopped": sum(r["right"] for r in stops if r["channel"] == ch), "of_stops": sum(1 for r in stops if r["channel"] == ch)}
                       for ch in CHANNELS},
        "stt_ms_p50": round(float(np.percentile([r["stt_ms"] for r in rows], 50)), 1),
        "stt_ms_p95": round(float(np.percentile([r["stt_ms"] for r in rows], 95)), 1),
        "wrong": [r for r in rows if not r["right"]],
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    stt = WhisperSTT(catalog.whisper_tiny_en(), device="cpu", cpu_threads=1)
    stt.warmup()
    results = []
    for prompt in (None, PROMPT):
        rows = transcribe_all(stt, prompt)
        results += [judge(rows, prompt, empty) for empty in EMPTY]
    path = save_results(args.out, "backchannels", {"machine": info, "device": "cpu", "stt": "whisper-tiny.en", "policies": results})
    print(f"\nacknowledgement or interruption, by the words (whisper tiny.en, 1 thread) on {info['cpu']}")
    n = len(VOICES) * len(CHANNELS)
    print(f"  {len(ACKNOWLEDGEMENTS)} acknowledgements and {len(INTERRUPTIONS)} interruptions x {n} voice/channel pairs")
    print(f"  {'decoder prompt':17} {'no words is':16} {'acks kept':>10} {'stops kept':>11} {'stt p50':>8} {'p95':>6}")
    for r in results:
        name = "none" if r["prompt"] is None else "acknowledgements"
        print(f"  {name:17} {r['empty_transcript']:16} {r['acknowledgements_kept']:>10} {r['interruptions_stopped']:>11} "
              f"{r['stt_ms_p50']:>6} ms {r['stt_ms_p95']:>4} ms")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
