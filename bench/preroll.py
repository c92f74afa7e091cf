"""How much of the audio before the VAD's speech start whisper should hear (`AgentConfig.preroll_s`).

Silero marks speech a window or two after its real onset (a soft "s", a breathy "h"), so the
dialog sends whisper some audio from before that mark. Too little clips the first sound; too
much is leading silence, on which whisper tiny.en hallucinates ("And then, and." for an
"mm hmm") or withholds a short word. Until 2026-12 the buffer was trimmed while a run was still
too short to be a turn, so the pre-roll whisper got varied between ~0.1 s and the setting with
the phase of the trimming; this measures the settings now that it is exact.

Every clip is cut as the dialog cuts it: 1 s of line silence, the speech, 1.5 s of silence,
through the phone channel at 16 kHz (as Asterisk >= 22.7 hands slin16 over), fed in 20 ms frames
to the dialog's own `CallerAudio` with silero VAD and the default endpointer, and whisper
tiny.en (1 thread, no prompt) transcribes what the dialog would send it:
- over the agent (bench.backchannels' acknowledgements and interruptions x voices x
  channels): the held speech's audio at its last check pause, judged by the dialog's rule
  (`backchannel.acknowledged`); speech too short to hold or too long to be an acknowledgement
  is decided by length, as in the dialog. The dialog may decide at an earlier pause when its
  check finishes before speech resumes; the last pause is the one no resumed speech cancels.
- turns (bench.telephone_stt's contact-centre utterances x voices x channels): the turn's
  audio at its end, WER after the dialog's normalisation.
The rule that picks the default: the most interruptions stopped (a missed one lets the agent
talk over the caller), then the most acknowledgements kept, with turn WER no worse than the
best setting's by more than 0.01.

    python -m bench.preroll                      # 0.1, 0.2, 0.3 s; prints the table, writes bench/results/
    python -m bench.preroll --prerolls 0.15,0.2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.backchannels import ACKNOWLEDGEMENTS, INTERRUPTIONS, channel
from bench.backchannels import VOICES as ACK_VOICES
from bench.machine import machine_info, save_results
from bench.telephone_stt import ITEMS
from bench.telephone_stt import VOICES as TURN_VOICES
from devtools.utterances import say
from models.normalize import wer
from models.silero import SileroVAD
from models.whisper import WhisperSTT
from models import catalog
from phoneagent.dialog.backchannel import acknowledged
from phoneagent.dialog.endpointer import Backchannel, BargeIn, EndOfTurn, EndpointerConfig, SpeculativeEndpoint
from phoneagent.dialog.turns import CallerAudio

RATE = 16000
FRAME = RATE // 50  # 20 ms
CHANNELS = ("ulaw", "alaw", "ulaw+noise")
PREROLLS = (0.1, 0.2, 0.3)


def on_the_line(pcm16k: bytes, name: str, rng: np.random.Generator) -> bytes:
    """1 s of silence, the speech, 1.5 s of silence, through bench.backchannels' phone channel
    (noise on all of it)."""
    return channel(bytes(2 * RATE) + pcm16k + bytes(3 * RATE), name, rng)


def cut(vad: SileroVAD, pcm: bytes, preroll_s: float, over_agent: bool) -> list[tuple[str, bytes, float]]:
    """What the dialog does with this audio, one entry per speech run: ("held", audio, seconds)
    for held speech over the agent at its last check pause; ("turn", audio, seconds) at the end
    of a turn; ("short" | "long", b"", 0.0) when its length alone decides (too short to hold:
    the agent goes on; held past backchannel_max_s: a barge-in)."""
    audio = CallerAudio(vad, RATE, preroll_s, EndpointerConfig())
    runs: list[tuple[str, bytes, float]] = []
    held: tuple[bytes, float] | None = None
    long = False
    for i in range(0, len(pcm), FRAME * 2):
        for ev in audio.feed(pcm[i:i + FRAME * 2], lambda: over_agent):
            if isinstance(ev, Backchannel):
                runs.append(("short", b"", 0.0))
            elif isinstance(ev, BargeIn):  # held past backchannel_max_s: too long to be an acknowledgement
                long = True
            elif isinstance(ev, SpeculativeEndpoint) and audio.endpointer.held:
                held = audio.utterance(ev.t_speech_end), ev.t_speech_end - (audio.turn_start or 0.0)
            elif isinstance(ev, EndOfTurn):
                if long:
                    runs.append(("long", b"", 0.0))
                elif over_agent and held is not None:
                    runs.append(("held", *held))
                else:
                    runs.append(("turn", audio.utterance(ev.t_speech_end), ev.t_speech_end - ev.t_speech_start))
                audio.turn_taken()
                held, long = None, False
    return runs


def over_the_agent(stt: WhisperSTT, vad: SileroVAD, preroll_s: float) -> list[dict[str, Any]]:
    """One row per clip: acknowledged when every speech run in it let the agent go on."""
    rng = np.random.default_rng(7)
    rows: list[dict[str, Any]] = []
    for voice, speed in ACK_VOICES:
        for words in ACKNOWLEDGEMENTS + INTERRUPTIONS:
            utt = say(words, voice=voice, speed=speed)
            for ch in CHANNELS:
                runs = cut(vad, on_the_line(utt.pcm16k, ch, rng), preroll_s, over_agent=True)
                heard, withheld, acks = [], [], []
                for how, pcm, seconds in runs:
                    if how == "held":
                        tr = stt.transcribe(pcm, RATE)
                        heard.append(tr.normalized.strip())
                        withheld.append(tr.withheld)
                        acks.append(acknowledged(tr, seconds, language="en", extra=(), barge_in_min_s=EndpointerConfig().barge_in_min_s))
                    else:
                        acks.append(how == "short")
                rows.append({"words": words, "voice": f"{voice}@{speed}", "channel": ch, "runs": [r[0] for r in runs],
                             "heard": " | ".join(heard), "withheld": " | ".join(withheld),
                             "acknowledgement": words in ACKNOWLEDGEMENTS, "acknowledged": bool(runs) and all(acks)})
    return rows


def turns(stt: WhisperSTT, vad: SileroVAD, preroll_s: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    rows: list[dict[str, Any]] = []
    for voice, speed in TURN_VOICES:
        for item in ITEMS:
            utt = say(item.text, voice=voice, speed=speed)
            for ch in CHANNELS:
                runs = cut(vad, on_the_line(utt.pcm16k, ch, rng), preroll_s, over_agent=False)
                heard = " ".join(stt.transcribe(pcm, RATE).text.strip() for _, pcm, _ in runs)
                rows.append({"text": item.text, "voice": f"{voice}@{speed}", "channel": ch, "turns": len(runs), "heard": heard,
                             "wer": round(wer(item.text, heard), 4)})
    return rows


def summary(preroll_s: float, acks: list[dict[str, Any]], turn_rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    kept = [r for r in acks if r["acknowledgement"] and r["acknowledged"]]
    missed = [r for r in acks if not r["acknowledgement"] and r["acknowledged"]]
    n_ack = sum(r["acknowledgement"] for r in acks)
    return {
        "preroll_s": preroll_s,
        "acknowledgements_kept": f"{len(kept)}/{n_ack}",
        "interruptions_stopped": f"{len(acks) - n_ack - len(missed)}/{len(acks) - n_ack}",
        "turn_wer": round(float(np.mean([r["wer"] for r in turn_rows])), 4),
        "turn_wer_by_channel": {ch: round(float(np.mean([r["wer"] for r in turn_rows if r["channel"] == ch])), 4) for ch in CHANNELS},
        "turns_split": sum(r["turns"] > 1 for r in turn_rows),
        "turns_unheard": sum(r["turns"] == 0 for r in turn_rows),
        "bench_s": round(seconds, 1),
        "wrong": [r for r in acks if r["acknowledged"] != r["acknowledgement"]],
        "turns": turn_rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prerolls", default=",".join(str(p) for p in PREROLLS), help="comma-separated seconds")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    prerolls = [float(p) for p in args.prerolls.split(",")]
    if any(not 0.0 <= p <= 1.0 for p in prerolls):
        ap.error("--prerolls: each must be within 0..1 s")
    info = machine_info()
    vad = SileroVAD(device="cpu")
    stt = WhisperSTT(catalog.whisper_tiny_en(), device="cpu", cpu_threads=1)
    stt.warmup()
    results = []
    for p in prerolls:
        t0 = time.perf_counter()
        acks = over_the_agent(stt, vad, p)
        results.append(summary(p, acks, turns(stt, vad, p), time.perf_counter() - t0))
    path = save_results(args.out, "preroll", {"machine": info, "device": "cpu", "stt": "whisper-tiny.en", "vad": "silero",
                                              "channels": list(CHANNELS), "results": results})
    n_pairs = len(ACK_VOICES) * len(CHANNELS)
    print(f"\npre-roll before the VAD's speech start, cut by CallerAudio (whisper tiny.en) on {info['cpu']}")
    print(f"  over the agent: {len(ACKNOWLEDGEMENTS)} acknowledgements and {len(INTERRUPTIONS)} interruptions x {n_pairs}"
          f" voice/channel pairs; turns: {len(ITEMS)} utterances x {len(TURN_VOICES) * len(CHANNELS)}")
    print(f"  {'pre-roll':>8} {'acks kept':>10} {'stops kept':>11} {'turn WER':>9}  " + " ".join(f"{c:>10}" for c in CHANNELS))
    for r in results:
        by = " ".join(f"{r['turn_wer_by_channel'][c]:>10.3f}" for c in CHANNELS)
        print(f"  {r['preroll_s']:>6.2f} s {r['acknowledgements_kept']:>10} {r['interruptions_stopped']:>11} {r['turn_wer']:>9.3f}  {by}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
