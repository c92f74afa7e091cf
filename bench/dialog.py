"""Dialog benchmark at the wire: voice-to-voice latency and barge-in stop time, N callers at once.

    .venv/bin/python -m bench.dialog [--calls 1,2,4] [--out bench/results]
    .venv/bin/python -m bench.dialog --versus endpointer.speculative_s=0.12   # paired A/B
    .venv/bin/python -m bench.dialog --with endpointer.min_delay_s=0.3 --versus "endpointer.min_delay_s=0.5;unfinished_words=false"

Each emulated caller (devtools/caller.py: Asterisk's wire format, paced 20 ms slin16 frames, voice
through an 8 kHz G.711 channel) waits for the greeting, asks a question, and 1 s into the answer
talks over the agent. Measured on the caller's side of the socket:
- v2v: caller's last voiced frame -> first agent frame with speech (endpointing included);
- barge-in stop: caller's first voiced frame over the agent -> agent's last voiced frame, and
  from the moment the dialog's VAD/endpointer fired (server event) -> agent's last voiced frame;
- stages: the dialog's own per-turn timings (endpoint, STT, first token, first audio, wire).
Everything is real: silero, whisper tiny.en, the catalogue's LLM (Qwen 0.5B instruct by default), Piper.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from media.pcm import voiced_frames
from audiosocket.server import AudioSocketServer, CallSession
from devtools.caller import CallerEmulator
from bench.machine import machine_info, peak_rss_mb, save_results
from devtools.utterances import synthesize_set
from models.engines import EngineConfig, Engines
from models.llama import LlamaLLM
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog

QUESTIONS = (8, 0, 4, 10)  # indexes into devtools/utterances.py
INTERRUPTION = 3  # "No, I don't think so."


def voiced_bounds(pcm: bytes, rate: int) -> tuple[float, float]:
    """Offsets (s) of the first and the end of the last voiced 20 ms frame in `pcm`."""
    voiced = voiced_frames(pcm, rate)
    return voiced[0], voiced[-1] + 0.02


def with_end_of_turn(cfg: AgentConfig, spec: str) -> AgentConfig:
    """`cfg` with the end-of-turn model on, from "ABOVE,BELOW[,DELAY]" (--end-of-turn); "" = off."""
    if not spec:
        return cfg
    above, below, *delay = (float(x) for x in spec.split(","))
    return dataclasses.replace(cfg, end_of_turn_model=True, endpointer=dataclasses.replace(
        cfg.endpointer, complete_above=above, incomplete_below=below, complete_delay_s=delay[0] if delay else 0.12))


def pct(xs: Sequence[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    s = sorted(xs)
    return {"p50": round(statistics.median(s), 1), "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], 1), "max": round(s[-1], 1), "n": len(s)}


async def one_caller(port: int, i: int, utts: list[Any], dialogs: dict[str, CallDialog], out: dict[str, list[float]],
                     delay_s: float = 0.0) -> None:
    """Asks its question `delay_s` after the greeting, times the answer, then interrupts it."""
    q = utts[QUESTIONS[i % len(QUESTIONS)]].pcm16k
    interrupt = utts[INTERRUPTION].pcm16k
    async with CallerEmulator("127.0.0.1", port) as caller:
        if not await caller.wait_agent_done(quiet_s=0.4, timeout=30):
            return
        if delay_s:
            await caller.silence(delay_s)
        t0, _ = await caller.say(q)
        q_end = t0 + voiced_bounds(q, 16000)[1]
        while caller.first_voiced_after(q_end) is None and not caller.ended:
            await caller.silence(0.05)
        first = caller.first_voiced_after(q_end)
        if first is None:
            return
        out["v2v_ms"].append((first - q_end) * 1000)
        await caller.silence(1.0)
        if caller.last_voiced_before(first + 10) is None or caller.received[-1].t - (caller.last_voiced_before(1e12) or 0) > 0.3:
            return  # the answer was already over: no barge-in to measure
        t1, _ = await caller.say(interrupt)
        onset = t1 + voiced_bounds(interrupt, 16000)[0]
        await caller.wait_agent_done(since=t1 + 1.5, quiet_s=0.3, timeout=20)
        last = caller.last_voiced_before(onset + 1.5)
        if last is not None and last > onset:
            out["barge_in_stop_after_onset_ms"].append((last - onset) * 1000)
        d = dialogs.get(str(caller.call_id))
        fired = next((t for t, kind, _ in (d.events if d else []) if kind == "barge_in"), None)
        if fired is not None and last is not None:
            out["barge_in_stop_after_vad_ms"].append(max(0.0, last - fired) * 1000)


def stages(dialogs: list[CallDialog]) -> dict[str, dict[str, float | None]]:
    keys = (("endpoint", "speech_end_ms", "endpoint_ms"), ("stt", "endpoint_ms", "stt_done_ms"),
            ("llm_first_token", "stt_done_ms", "llm_first_token_ms"), ("tts_first_audio", "llm_first_token_ms", "tts_first_audio_ms"),
            ("to_wire", "tts_first_audio_ms", "first_frame_ms"))
    acc: dict[str, list[float]] = {k: [] for k, _, _ in keys}
    for d in dialogs:
        for t in d.turns:
            tm = t["timings"]
            if t["role"] != "agent" or tm.speech_end_ms is None:
                continue
            for name, a, b in keys:
                va, vb = getattr(tm, a), getattr(tm, b)
                if va is not None and vb is not None:
                    acc[name].append(vb - va)
    return {k: pct(v) for k, v in acc.items()}


def speculation(dialogs: list[CallDialog]) -> dict[str, int]:
    """How many caller turns were answered from a speculative start, and how many were thrown away."""
    kinds = [kind for d in dialogs for _, kind, _ in d.events]
    return {"used": kinds.count("speculation_used"), "dropped": kinds.count("speculation_dropped")}


def turn_model(dialogs: list[CallDialog]) -> dict[str, Any]:
    """How often the end-of-turn model ended a turn sooner, held one open, or was overruled (the
    caller talked on after a "complete", or barged in), and its inference time."""
    events = [(k, dt) for d in dialogs for _, k, dt in d.events]
    ms = [float(dt["ms"]) for k, dt in events if k == "turn_model" and dt]
    ends = [str(dt["verdict"]) for k, dt in events if k == "end_of_turn" and dt]
    completes = sum(1 for k, dt in events if k == "turn_model" and dt and dt.get("verdict") == "complete")
    return {"verdicts": len(ms), "ended_sooner": ends.count("complete"), "held_open": ends.count("incomplete"),
            "complete_then_caller_went_on": completes - ends.count("complete"), "inference_ms": pct(ms)}


async def run_level(engines: Engines, calls: int, utts: list[Any], repeats: int = 1, cfg: AgentConfig | None = None,
                    *, versus: AgentConfig | None = None, stagger_s: float = 0.0) -> dict[str, Any]:
    """`calls` callers at once, `repeats` times in a row; samples are pooled. With `versus`, each
    round runs both configurations, alternating which goes first, so the VM's drift (a quarter
    within the hour here) hits both alike; the other's figures are under "versus". `stagger_s`:
    caller k asks k * stagger_s later (0: all at once, the worst case; a real line's turns
    fall at random, one caller's question often while another's answer plays)."""
    fresh = engines.sharing()
    cfgs = [cfg or AgentConfig(greeting="Hello, how can I help?", max_reply_tokens=48), *([versus] if versus else [])]
    dialogs: list[dict[str, CallDialog]] = [{} for _ in cfgs]
    current = 0

    async def handler(session: CallSession) -> None:
        v = current
        d = CallDialog(fresh, cfgs[v])
        dialogs[v][str(session.call_id)] = d
        await d.run(session)

    server = AudioSocketServer(handler, "127.0.0.1", 0)
    await server.start()
    outs: list[dict[str, list[float]]] = [
        {"v2v_ms": [], "barge_in_stop_after_onset_ms": [], "barge_in_stop_after_vad_ms": []} for _ in cfgs]
    try:
        for r in range(repeats):
            for v in (range(len(cfgs)) if r % 2 == 0 else reversed(range(len(cfgs)))):
                current = v
                await asyncio.gather(*(one_caller(server.port, r * calls + i, utts, dialogs[v], outs[v], i * stagger_s)
                                       for i in range(calls)))
    finally:
        await server.close()
        await fresh.close_schedulers()
    results = [_summary(calls, outs[v], list(dialogs[v].values()), cfgs[v]) for v in range(len(cfgs))]
    result = {**results[0], "stagger_s": stagger_s, "queues": fresh.metrics()}  # the queues: both configurations' rounds
    if versus is not None:
        result["versus"] = results[1]
    return result


def _summary(calls: int, out: dict[str, list[float]], dialogs: list[CallDialog], cfg: AgentConfig) -> dict[str, Any]:
    return {
        "calls": calls,
        "v2v_ms": pct(out["v2v_ms"]),
        "barge_in_stop_ms": pct(out["barge_in_stop_after_onset_ms"]),
        "barge_in_stop_after_vad_ms": pct(out["barge_in_stop_after_vad_ms"]),
        "stages_ms": stages(dialogs),
        "samples_ms": {k: [round(x, 1) for x in v] for k, v in out.items()},
        "speculation": speculation(dialogs),
        "end_of_turn_model": turn_model(dialogs) if cfg.end_of_turn_model else None,
        # turns whose words at a pause stopped mid-sentence and so waited max_delay_s (unfinished_words)
        "held_by_words": sum(1 for d in dialogs for _, k, dt in d.events if k == "end_of_turn" and dt and dt.get("unfinished_words")),
        # the caller's words so far evaluated into the LLM cache while they spoke (words_ahead_s)
        "words_ahead": sum(1 for d in dialogs for _, k, _dt in d.events if k == "words_ahead"),
        # silence inside the agent's speech, per call: its next clause was not synthesised in time
        "agent_audio_starved_ms": pct([d.starved_ms for d in dialogs]),
    }


def _specs(specs: str) -> list[str]:
    """The ";"-separated "FIELD=VALUE" settings of --with / --versus."""
    return [spec.strip() for spec in specs.split(";") if spec.strip()]


def with_settings(cfg: AgentConfig, specs: str) -> AgentConfig:
    """`cfg` with each of the ";"-separated "FIELD=VALUE" settings changed (--with, --versus)."""
    for spec in _specs(specs):
        cfg = with_setting(cfg, spec)
    return cfg


def setting_name(spec: str) -> str:
    """"endpointer.min_delay_s=0.4" -> "min_delay_s-0.4": a results file's name part."""
    key, _, value = spec.strip().partition("=")
    return f"{key.rpartition('.')[2]}-{value}"


def with_setting(cfg: AgentConfig, spec: str) -> AgentConfig:
    """`cfg` with one setting changed, from "FIELD=VALUE" or "endpointer.FIELD=VALUE" (--versus)."""
    key, sep, raw = spec.partition("=")
    owner, _, name = key.rpartition(".")
    if not sep or owner not in ("", "endpointer"):
        raise SystemExit(f"--versus wants FIELD=VALUE or endpointer.FIELD=VALUE, got {spec!r}")
    target: Any = cfg.endpointer if owner else cfg
    if name not in {f.name for f in dataclasses.fields(target)}:
        raise SystemExit(f"--versus: {type(target).__name__} has no field {name!r}")
    value = _setting_value(getattr(target, name), raw, spec)
    changed = dataclasses.replace(target, **{name: value})
    return dataclasses.replace(cfg, endpointer=changed) if owner else changed


def _setting_value(old: Any, raw: str, spec: str) -> Any:
    """`raw` read as the type of the field's current value, by the same pydantic rules as the
    agent files ("off" is False where bool("off") is True; "2.5" is no whole number)."""
    kind = ("true or false" if isinstance(old, bool) else "a whole number" if isinstance(old, int)
            else "a number" if isinstance(old, float) else f"a {type(old).__name__}")
    try:
        return TypeAdapter(type(old)).validate_python(raw)
    except ValidationError:
        raise SystemExit(f"--versus: {spec!r} wants {kind}, not {raw!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="1,2,4", help="comma-separated concurrency levels")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per level (samples are pooled)")
    ap.add_argument("--llm-pool", type=int, default=None, help="llama.cpp instances (default: EngineConfig's)")
    ap.add_argument("--llm", default="", help="catalogue name of the LLM (default: EngineConfig's)")
    ap.add_argument("--end-of-turn", default="", metavar="ABOVE,BELOW[,DELAY]",
                    help="use the end-of-turn model: P(complete) that ends a turn after DELAY s (default 0.12), that waits max_delay_s")
    ap.add_argument("--llm-fixed-threads", action="store_true",
                    help="the LLM never widens onto idle cores (as before models/cpu.py), for an A/B")
    ap.add_argument("--first-clause-words", type=int, default=None, metavar="N",
                    help="AgentConfig.first_clause_words_waiting (default: AgentConfig's; 6: only the fixed cap), for an A/B")
    ap.add_argument("--with", dest="with_", default="", metavar="FIELD=VALUE[;...]",
                    help="the agent with these settings changed (e.g. endpointer.min_delay_s=0.3); the file's name gets them")
    ap.add_argument("--versus", default="", metavar="FIELD=VALUE[;...]",
                    help="also run the agent with these settings changed (e.g. endpointer.speculative_s=0.12), round by round alternately")
    ap.add_argument("--stagger", type=float, default=0.0, metavar="S",
                    help="caller k asks its question k*S seconds after the greeting (default 0: all at once)")
    ap.add_argument("--tag", default="", help="added to the results file's name (a run that must not replace the default's)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    cfg = with_end_of_turn(AgentConfig(greeting="Hello, how can I help?", max_reply_tokens=48), args.end_of_turn)
    if args.first_clause_words is not None:
        cfg = dataclasses.replace(cfg, first_clause_words_waiting=args.first_clause_words)
    if args.with_:
        cfg = with_settings(cfg, args.with_)
    versus = with_settings(cfg, args.versus) if args.versus else None
    config = EngineConfig(**({"llm_pool": args.llm_pool} if args.llm_pool is not None else {}),
                          **({"llm": args.llm} if args.llm else {}))
    engines = Engines.load(config)
    if args.llm_fixed_threads and isinstance(engines.llm, LlamaLLM):
        engines.llm.max_threads = engines.llm.n_threads
    utts = synthesize_set()
    levels = [asyncio.run(run_level(engines, int(n), utts, args.repeats, cfg, versus=versus, stagger_s=args.stagger))
              for n in args.calls.split(",")]
    one = levels[0]
    result = {
        "machine": info, "device": info["device"], "repeats": args.repeats, "calls": one["calls"], "v2v_ms": one["v2v_ms"],
        "barge_in_stop_ms": one["barge_in_stop_ms"], "stages_ms": one["stages_ms"], "levels": levels,
        "engines": dataclasses.asdict(config),
        "end_of_turn": args.end_of_turn or None, "first_clause_words_waiting": cfg.first_clause_words_waiting,
        "with": args.with_ or None, "versus": args.versus or None, "stagger_s": args.stagger,
        "llm_threads": "fixed" if args.llm_fixed_threads else "widened onto idle cores",
        "max_calls_with_p95_v2v_under_1500ms": max((lv["calls"] for lv in levels if (lv["v2v_ms"]["p95"] or 1e9) <= 1500), default=0),
        "peak_rss_mb": peak_rss_mb(),
    }
    # a non-default LLM gets its own file, so the default's figures are never overwritten
    name = ("dialog" + (f"-{args.llm}" if args.llm else "") + (f"-eot-{args.end_of_turn.replace(',', '-')}" if args.end_of_turn else "")
            + ("-llm-fixed-threads" if args.llm_fixed_threads else "") + (f"-stagger-{args.stagger:g}" if args.stagger else "")
            + (f"-{args.tag}" if args.tag else "")
            + "".join(f"-{setting_name(spec)}" for spec in _specs(args.with_)))
    path = save_results(args.out, name, result)
    print(f"dialog benchmark on {info['cpu']} ({info['cores']} cores), device {info['device']}")
    print(f"  {'calls':>5}  {'v2v p50/p95/max ms':>22}  {'barge-in stop p50/p95 ms (onset | VAD)':>40}  "
          "stages p50 ms (endpoint/stt/llm/tts/wire)  starved p50/p95 ms")
    for lv in levels:
        for row, label in ((lv, ""), *(((lv["versus"], f"  with {args.versus}"),) if args.versus else ())):
            v, b, bv, st = row["v2v_ms"], row["barge_in_stop_ms"], row["barge_in_stop_after_vad_ms"], row["stages_ms"]
            stage_txt = "/".join(str(st[k]["p50"]) for k in ("endpoint", "stt", "llm_first_token", "tts_first_audio", "to_wire"))
            sv = row["agent_audio_starved_ms"]
            print(f"  {row['calls']:>5}  {v['p50']!s:>7}/{v['p95']!s:>7}/{v['max']!s:>6}  {b['p50']!s:>9}/{b['p95']!s:>7} | "
                  f"{bv['p50']!s:>7}/{bv['p95']!s:>7}      {stage_txt}  {sv['p50']}/{sv['p95']}{label}")
            if row["end_of_turn_model"]:
                print(f"         end-of-turn model: {row['end_of_turn_model']}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
