"""The LLM's threads on a shared CPU: fixed (one core, today's default on 2 cores) vs widened
to the cores no engine is computing on (models/cpu.py).

For each catalogue LLM: time to first token of a new caller turn after the call's cached prefix
(what the caller waits for in a plain turn), and decode speed of a short reply, with the other
cores idle and with whisper decoding in a loop beside it (what a second call's STT does).

    python -m bench.llm_threads [--llm gemma-3-270m,qwen2.5-coder-0.5b-instruct]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.machine import machine_info, save_results
from devtools.utterances import say
from models import catalog
from models.base import Message
from models.llama import LlamaLLM
from models.whisper import WhisperSTT

SYSTEM = ("You are the phone agent of Northwind Shipping. Answer in one or two short spoken sentences. Never use markdown. "
          "You help callers with their parcels, delivery days and opening hours. ") * 3
TURNS = ("What time do you close on Saturday? I need to pick up a parcel.", "Can you tell me whether my order is delayed, please?",
         "I would like to change the delivery address for my parcel.", "Do you deliver on Sundays as well or only on weekdays?")


@contextmanager
def whisper_beside(on: bool) -> Iterator[None]:
    """Whisper decoding a 3 s utterance in a loop on another thread (counted as computing)."""
    stop = threading.Event()
    thread = None
    if on:
        stt = WhisperSTT(catalog.whisper_tiny_en(), device="cpu", cpu_threads=1, language="en")
        stt.warmup()
        pcm = say(TURNS[0]).pcm16k

        def loop() -> None:
            while not stop.is_set():
                stt.transcribe(pcm, 16000)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        time.sleep(0.5)
    try:
        yield
    finally:
        stop.set()
        if thread is not None:
            thread.join()


def measure(llm: LlamaLLM, repeats: int) -> dict[str, Any]:
    history = [Message("system", SYSTEM), Message("assistant", "Hello, this is Northwind Shipping. How can I help you today?")]
    ttft, tok_s = [], []
    for _ in range(repeats):
        for turn in TURNS:
            llm.prefill(history, session_key="bench")  # the call's cached prefix, as the dialog keeps it
            t0 = time.perf_counter()
            first, n = None, 0
            gen = llm.stream([*history, Message("user", turn)], max_tokens=24, session_key="bench")
            for _tok in gen:
                n += 1
                first = first or time.perf_counter()
            end = time.perf_counter()
            assert first is not None
            ttft.append((first - t0) * 1000)
            if n > 1:
                tok_s.append((n - 1) / (end - first))
    return {"ttft_ms_p50": round(statistics.median(ttft)), "ttft_ms_max": round(max(ttft)),
            "decode_tok_s_p50": round(statistics.median(tok_s), 1), "n": len(ttft)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", default="gemma-3-270m,qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    cat = catalog.load_catalog()
    rows = []
    for name in args.llm.split(","):
        for widen in (False, True):
            llm = LlamaLLM(catalog.get(cat, name).path, n_threads=1, max_threads=None if widen else 1)
            llm.warmup()
            for busy in (False, True):
                with whisper_beside(busy):
                    r = measure(llm, args.repeats)
                rows.append({"llm": name, "threads": f"1, widened to {llm.max_threads} on idle cores" if widen else "1 (fixed)",
                             "beside": "whisper decoding" if busy else "nothing", **r})
                print(rows[-1], flush=True)
            llm.close()
    path = save_results(args.out, "llm-threads", {"machine": info, "device": "cpu", "rows": rows})
    print(f"\nLLM threads on {info['cpu']} ({info.get('cores') or ''} cores)")
    print(f"  {'llm':28} {'threads':34} {'beside':17} {'first token p50/max ms':>22} {'decode tok/s':>12}")
    for r in rows:
        print(f"  {r['llm']:28} {r['threads']:34} {r['beside']:17} {r['ttft_ms_p50']:>12}/{r['ttft_ms_max']:<9} {r['decode_tok_s_p50']:>12}")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
