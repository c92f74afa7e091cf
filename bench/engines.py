"""Engine benchmark: load times, latency, RTF, TTFT, tokens/s, VAD cost, peak RSS and WER on
clean vs telephone (8 kHz G.711) audio. Prints a table and writes JSON with the machine.

    .venv/bin/python -m bench.engines [--repeats 5] [--out bench/results]

Caller utterances are synthesised with espeak-ng (devtools/utterances.py), never with the Piper
voice we ship, so STT is not graded on its own TTS's accent.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from media.pcm import frame_bytes, resample, tone
from bench.machine import machine_info, peak_rss_mb, save_results
from devtools.utterances import synthesize_set, telephone
from models import catalog as cat
from models.base import LLM, STT, CancelToken, Message, ToolSpec, drain
from models.engines import EngineConfig, Engines
from models.normalize import wer
from phoneagent.dialog.chunker import split_text

TARGETS = {"vad_ms_per_window": 0.3, "stt_median_ms_3s": 400.0, "tts_first_audio_ms": 150.0}

SYSTEM = (
    "You are the phone agent of Northwind Energy. Be brief: one or two sentences. Verify the "
    "caller with their account number and postcode before discussing a bill. You can look up "
    "balances, book a meter reading, and transfer to a human. Never invent account data; if a "
    "lookup fails, say so and offer a transfer. Speak numbers digit by digit. If you did not "
    "understand, ask one short clarifying question. Office hours are 8 to 6 on weekdays."
)


def stats_ms(xs: Sequence[float], digits: int = 1) -> dict[str, float]:
    s = sorted(x * 1000 for x in xs)
    return {"min": round(s[0], digits), "median": round(statistics.median(s), digits), "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], digits), "n": len(s)}


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_vad(engines: Engines, repeats: int) -> dict[str, Any]:
    from models.silero import SileroVAD

    vad = engines.vad
    assert isinstance(vad, SileroVAD)
    res: dict[str, Any] = {}
    for rate in (16000, 8000):
        audio = tone(300.0, 3200, rate)  # 100 windows of 32 ms
        s = vad.stream(rate)
        n = len(s.process(audio))
        per = [t / n for t in timed(lambda: vad.stream(rate).process(audio), repeats)]
        res[f"single_{rate}"] = stats_ms(per, 3)
        streams = [vad.stream(rate) for _ in range(20)]
        per_b = [t / (n * 20) for t in timed(lambda: vad.process_batch(streams, [audio] * 20), repeats)]
        res[f"batched20_{rate}"] = stats_ms(per_b, 3)
    return res


def bench_stt(stt: STT, utts: list[Any], repeats: int) -> dict[str, Any]:
    lat_3s, rtf, all_lat = [], [], []
    hyps_clean, hyps_tel = [], []
    for u in utts:
        audio_s = len(u.pcm16k) / 32000
        tel = telephone(u)
        for _ in range(repeats):
            t0 = time.perf_counter()
            tr = stt.transcribe(tel, 8000)
            dt = time.perf_counter() - t0
            all_lat.append(dt)
            rtf.append(dt / audio_s)
            if 2.0 <= audio_s <= 4.5:
                lat_3s.append(dt)
        hyps_tel.append(tr.text)
        hyps_clean.append(stt.transcribe(u.pcm16k, 16000).text)
    refs = [u.text for u in utts]
    return {
        "telephone_latency_ms": stats_ms(all_lat),
        "latency_ms_2_to_4_5s": stats_ms(lat_3s) if lat_3s else None,
        "rtf_median": round(statistics.median(rtf), 3),
        "wer_clean": round(wer(" ".join(refs), " ".join(hyps_clean)), 3),
        "wer_telephone": round(wer(" ".join(refs), " ".join(hyps_tel)), 3),
        "words": sum(len(r.split()) for r in refs),
    }


def bench_llm(llm: LLM, repeats: int) -> dict[str, Any]:
    reset = getattr(llm, "reset_cache", None)
    fresh, cached, tps = [], [], []
    prompt_tokens = cached_tokens = 0
    for i in range(repeats):
        if reset is not None:
            reset()
        conv = [Message("system", SYSTEM), Message("user", f"Hi, I'd like to check my balance please, account {1000 + i}.")]
        _, st = drain(llm.stream(conv, max_tokens=32, session_key="bench"))
        fresh.append(st.ttft_s)
        prompt_tokens = st.prompt_tokens
        if st.completion_tokens > 1:
            tps.append((st.completion_tokens - 1) / max(1e-6, st.total_s - st.ttft_s))
        conv2 = conv + [Message("assistant", "Sure, what is your postcode?"), Message("user", "It's S W one A, one A A.")]
        _, st2 = drain(llm.stream(conv2, max_tokens=16, session_key="bench"))
        cached.append(st2.ttft_s)
        cached_tokens = st2.cached_tokens
    tool = ToolSpec("lookup_balance", "Look up an account balance.", {"type": "object", "properties": {"account": {"type": "string", "pattern": "^[0-9]{4,10}$"}}, "required": ["account"]})
    tool_lat = timed(lambda: llm.tool_call([Message("system", SYSTEM), Message("user", "Balance for account 4471 please.")], [tool]), max(1, repeats // 2))
    return {
        "prompt_tokens": prompt_tokens,
        "ttft_fresh_ms": stats_ms(fresh),
        "ttft_next_turn_ms": stats_ms(cached),
        "next_turn_cached_tokens": cached_tokens,
        "tokens_per_s_median": round(statistics.median(tps), 1) if tps else None,
        "tool_call_ms": stats_ms(tool_lat),
    }


def bench_tts(engines: Engines, repeats: int) -> dict[str, Any]:
    tts = engines.tts
    first: dict[str, list[float]] = {"short_clause": [], "reply_25_words": []}
    texts = {"short_clause": "One moment, please.", "reply_25_words": "Thanks, I found your account. Your balance is forty two pounds, due on the third of May, and you can pay by card or by direct debit."}
    rtf = []
    for _ in range(repeats):
        for key, text in texts.items():
            # As the dialog speaks: the chunker cuts clauses, TTS speaks each as it is given.
            clauses = split_text(text)
            t0 = time.perf_counter()
            chunk = next(tts.synthesize(clauses[0], 8000, cancel=CancelToken()))
            first[key].append(time.perf_counter() - t0)
            total = len(chunk.pcm) + sum(len(c.pcm) for clause in clauses[1:] for c in tts.synthesize(clause, 8000))
            if key == "reply_25_words":
                rtf.append((time.perf_counter() - t0) / (total / 16000))
    return {"first_audio_ms": {k: stats_ms(v) for k, v in first.items()}, "rtf_median": round(statistics.median(rtf), 3)}


async def bench_concurrency(engines: Engines, utts: list[Any], calls: int) -> dict[str, Any]:
    """`calls` callers finish an utterance at the same moment: STT queue wait and batching."""
    fresh = engines.sharing()
    pcm = [telephone(utts[i % len(utts)]) for i in range(calls)]
    latencies: list[float] = []

    async def one(p: bytes) -> None:
        t = time.perf_counter()
        await fresh.transcribe(p, 8000)
        latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(p) for p in pcm))
    wall = time.perf_counter() - t0
    m = fresh.metrics()["stt"]
    await fresh.close_schedulers()
    return {"calls": calls, "wall_ms": round(wall * 1000, 1), "latency_ms": stats_ms(latencies), "stt_wait_ms": m["wait_ms"], "stt_batches": m["batches"], "shed": m["shed"]}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    info = machine_info()
    engines = Engines.load(EngineConfig(device=args.device))
    utts = synthesize_set()
    results: dict[str, Any] = {"machine": info, "device": info["device"], "engines": [e.__dict__ for e in engines.infos]}
    results["load_ms"] = {k: round(v * 1000, 1) for k, v in engines.load_s.items()}
    results["vad"] = bench_vad(engines, args.repeats)
    results["stt"] = {"whisper-tiny.en": bench_stt(engines.stt, utts, args.repeats)}
    from models.whisper import WhisperSTT

    t = time.perf_counter()
    base = WhisperSTT(cat.whisper_base(), device=args.device, language="en")
    base.warmup()
    results["load_ms"]["stt_whisper_base"] = round((time.perf_counter() - t) * 1000, 1)
    results["stt"]["whisper-base"] = bench_stt(base, utts, max(1, args.repeats // 2))
    del base
    results["llm"] = bench_llm(engines.llm, args.repeats)
    results["tts"] = bench_tts(engines, args.repeats)
    results["concurrency"] = {f"stt_{n}_calls": asyncio.run(bench_concurrency(engines, utts, n)) for n in (4, 8)}
    results["peak_rss_mb"] = peak_rss_mb()
    tiny = results["stt"]["whisper-tiny.en"]
    results["targets"] = {
        "vad_ms_per_window <= 0.3": results["vad"]["single_16000"]["median"] <= TARGETS["vad_ms_per_window"],
        "stt_median_ms_3s <= 400": (tiny["latency_ms_2_to_4_5s"] or {}).get("median", 1e9) <= TARGETS["stt_median_ms_3s"],
        "tts_first_audio_ms_short_clause <= 150": results["tts"]["first_audio_ms"]["short_clause"]["median"] <= TARGETS["tts_first_audio_ms"],
    }
    path = save_results(args.out, "engines", results)
    print_table(results)
    print(f"\nwritten {path}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"engines benchmark on {m['cpu']} ({m['cores']} cores), device {r['device']}, commit {m['commit']}")
    rows = [
        ("load ms (vad/stt/llm/tts/base)", " / ".join(str(r["load_ms"][k]) for k in ("vad", "stt", "llm", "tts", "stt_whisper_base"))),
        ("VAD ms/window 16k single, batched x20", f"{r['vad']['single_16000']['median']} / {r['vad']['batched20_16000']['median']}"),
        ("VAD ms/window 8k single, batched x20", f"{r['vad']['single_8000']['median']} / {r['vad']['batched20_8000']['median']}"),
    ]
    for name, s in r["stt"].items():
        lat = s["latency_ms_2_to_4_5s"] or {}
        rows.append((f"STT {name} 2-4.5 s clip ms min/med/p95", f"{lat.get('min')} / {lat.get('median')} / {lat.get('p95')}  RTF {s['rtf_median']}"))
        rows.append((f"STT {name} WER clean / telephone", f"{s['wer_clean']} / {s['wer_telephone']} ({s['words']} words)"))
    llm = r["llm"]
    rows += [
        (f"LLM TTFT fresh ({llm['prompt_tokens']} tok) / next turn", f"{llm['ttft_fresh_ms']['median']} / {llm['ttft_next_turn_ms']['median']} ms ({llm['next_turn_cached_tokens']} cached)"),
        ("LLM tokens/s, tool call ms", f"{llm['tokens_per_s_median']}, {llm['tool_call_ms']['median']}"),
        ("TTS first audio short clause / 25-word reply", f"{r['tts']['first_audio_ms']['short_clause']['median']} / {r['tts']['first_audio_ms']['reply_25_words']['median']} ms, RTF {r['tts']['rtf_median']}"),
    ]
    for k, c in r["concurrency"].items():
        rows.append((f"{k} at once: latency med/p95, batches", f"{c['latency_ms']['median']} / {c['latency_ms']['p95']} ms, {c['stt_batches']} whisper call(s)"))
    rows.append(("peak RSS MB", str(r["peak_rss_mb"])))
    rows += [(f"target {k}", "met" if v else "MISSED") for k, v in r["targets"].items()]
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{w}}  {b}")


if __name__ == "__main__":
    raise SystemExit(main())
