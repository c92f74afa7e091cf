"""Tool turns at the wire: an agent file's agent answering from a business system.

    .venv/bin/python -m bench.agent_turns [--calls 1,2] [--repeats 4] [--delay-ms 100]

Each emulated caller (devtools/caller.py: paced 20 ms slin16 frames, voice through an 8 kHz G.711
channel) waits for the shipments agent's greeting (agents/shipments.yaml, the bundled Qwen 0.5B
instruct model) and asks about an order in the sample backend, whose every answer is delayed by
--delay-ms (the business system's own latency). Measured from the caller's last voiced frame:
- first_audio: the first agent speech the caller hears (the filler, where one plays);
- answer: the first frame of the spoken answer that carries the order's data (server timings);
- the stages of the tool turn (endpoint, STT, the LLM's choice of tool, its arguments, the
  webhook, TTS) and whether the tool got the right arguments.
Everything is real: silero, whisper tiny.en, Qwen, Piper, aiohttp to the sample backend.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audiosocket.server import AudioSocketServer, CallSession
from bench.dialog import pct, voiced_bounds
from bench.machine import machine_info, peak_rss_mb, save_results
from devtools.backend import serving
from devtools.caller import CallerEmulator
from devtools.utterances import Utterance, say
from models.base import Message
from models.engines import EngineConfig, Engines
from models.scheduler import Priority
from phoneagent.agents.load import Agent, load_agents
from phoneagent.dialog.actions import system_prompt
from phoneagent.dialog.session import CallDialog
from phoneagent.tools.answer import spoken_digits
from phoneagent.tools.webhook import ToolRunner

AGENTS = Path(__file__).resolve().parents[1] / "agents"
QUESTIONS = (("Where is my order? The number is four five seven two.", "4572"),
             ("Where is my order? The number is three three one eight.", "3318"))


async def one_caller(port: int, i: int, utts: list[tuple[Utterance, str]], dialogs: dict[str, CallDialog],
                     out: dict[str, list[float]], right: list[bool], misses: list[dict[str, Any]]) -> None:
    utt, order = utts[i % len(utts)]
    async with CallerEmulator("127.0.0.1", port) as caller:
        if not await caller.wait_agent_done(quiet_s=0.4, timeout=30):
            return
        t0, _ = await caller.say(utt.pcm16k)
        q_end = t0 + voiced_bounds(utt.pcm16k, 16000)[1]
        await caller.wait_agent_done(since=q_end + 0.5, quiet_s=1.2, timeout=30)
        first = caller.first_voiced_after(q_end)
        if first is not None:
            out["first_audio_ms"].append((first - q_end) * 1000)
        d = dialogs.get(str(caller.call_id))
        if d is None:
            return
        calls = [e for _, k, e in d.events if k == "tool_call"]
        ok = bool(calls) and calls[0].get("arguments") == {"order_id": order} and bool(calls[0].get("ok"))
        right.append(ok)
        if not ok:  # why: what was heard, and what the agent did instead
            misses.append({"want": order, "heard": [t["text"] for t in d.turns if t["role"] == "caller"],
                           "tool_calls": [c.get("arguments") for c in calls], "events": [k for _, k, _ in d.events][-8:]})
        answer = next((t for t in d.turns if t["role"] == "agent" and spoken_digits(order) in t["text"]), None)
        if answer is not None:
            tm = answer["timings"]
            if tm.first_frame_ms is not None and tm.speech_end_ms is not None:
                out["answer_ms"].append(tm.first_frame_ms - tm.speech_end_ms)
            for name, a, b in (("endpoint", tm.speech_end_ms, tm.endpoint_ms), ("stt", tm.endpoint_ms, tm.stt_done_ms),
                               ("choice_and_arguments", tm.stt_done_ms, tm.llm_first_token_ms),
                               ("webhook_and_tts", tm.llm_first_token_ms, tm.tts_first_audio_ms)):
                if a is not None and b is not None:
                    out[f"stage_{name}_ms"].append(b - a)
        if calls:
            out["webhook_ms"].append(float(calls[0].get("duration_ms") or 0.0))


async def run_level(engines: Engines, agent: Agent, runner: ToolRunner, calls: int, utts: list[tuple[Utterance, str]],
                    repeats: int) -> dict[str, Any]:
    fresh = engines.sharing()
    dialogs: dict[str, CallDialog] = {}

    async def handler(session: CallSession) -> None:
        d = CallDialog(fresh, agent.config, tools=runner)
        dialogs[str(session.call_id)] = d
        await d.run(session)

    server = AudioSocketServer(handler, "127.0.0.1", 0)
    await server.start()
    out: dict[str, list[float]] = {k: [] for k in ("first_audio_ms", "answer_ms", "webhook_ms", "stage_endpoint_ms", "stage_stt_ms",
                                                   "stage_choice_and_arguments_ms", "stage_webhook_and_tts_ms")}
    right: list[bool] = []
    misses: list[dict[str, Any]] = []
    try:
        for r in range(repeats):
            await asyncio.gather(*(one_caller(server.port, r * calls + i, utts, dialogs, out, right, misses) for i in range(calls)))
    finally:
        await server.close()
        await fresh.close_schedulers()
    return {"calls": calls, "first_audio_ms": pct(out["first_audio_ms"]), "answer_ms": pct(out["answer_ms"]),
            "right_tool_and_arguments": f"{sum(right)}/{len(right)}", "misses": misses,
            "stages_ms": {k[6:-3]: pct(v) for k, v in out.items() if k.startswith("stage_")}, "webhook_ms": pct(out["webhook_ms"]),
            "samples_ms": {k: [round(x, 1) for x in v] for k, v in out.items()}, "queues": fresh.metrics(),
            # the caller's words evaluated into the LLM cache while they spoke (AgentConfig.words_ahead_s)
            "words_ahead": sum(1 for d in dialogs.values() for _, k, _dt in d.events if k == "words_ahead")}


async def run(levels: list[int], repeats: int, delay_ms: int, config: EngineConfig, words_ahead_s: float | None = None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        async with serving(Path(tmp) / "business.sqlite", delay_s=delay_ms / 1000) as url:
            agent = load_agents(AGENTS, env={**os.environ, "SAMPLE_BACKEND_URL": url})["shipments"]
            if words_ahead_s is not None:
                agent = dataclasses.replace(agent, config=dataclasses.replace(agent.config, words_ahead_s=words_ahead_s))
            engines = await asyncio.to_thread(Engines.load, config)
            await engines.prefill([Message("system", system_prompt(agent.config))], every_instance=True, priority=Priority.TURN)
            runner = ToolRunner(agent.webhooks, agent.allowed_hosts)
            utts = [(say(text, voice="en-gb", speed=140), order) for text, order in QUESTIONS]
            try:
                return [await run_level(engines, agent, runner, n, utts, repeats) for n in levels]
            finally:
                await runner.aclose()
                await engines.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="1,2", help="comma-separated concurrency levels")
    ap.add_argument("--repeats", type=int, default=4, help="rounds per level (samples are pooled)")
    ap.add_argument("--delay-ms", type=int, default=100, help="the sample backend's latency per request")
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b-instruct", help="catalogue name of the LLM")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per model call (default: each engine's)")
    ap.add_argument("--words-ahead", type=float, default=None, metavar="S",
                    help="AgentConfig.words_ahead_s (default: the agent's; 0: off), for an A/B")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    config = EngineConfig(llm=args.llm, threads=args.threads)
    levels = asyncio.run(run([int(n) for n in args.calls.split(",")], args.repeats, args.delay_ms, config, args.words_ahead))
    result = {"machine": info, "device": info["device"], "repeats": args.repeats, "webhook_delay_ms": args.delay_ms,
              "agent": "agents/shipments.yaml", "levels": levels, "engines": dataclasses.asdict(config), "peak_rss_mb": peak_rss_mb()}
    name = f"agent-turns-{args.llm}" + (f"-{args.threads}threads" if args.threads else "")
    path = save_results(args.out, name + (f"-words-ahead-{args.words_ahead:g}" if args.words_ahead is not None else ""),
                        {**result, "words_ahead_s": args.words_ahead})
    print(f"tool turns (shipments agent, {args.llm}, webhook +{args.delay_ms} ms) on {info['cpu']} ({info['cores']} cores), "
          f"device {info['device']}")
    print(f"  {'calls':>5}  {'first audio p50/p95 ms':>22}  {'answer p50/p95 ms':>18}  {'right':>6}  stages p50 ms (endpoint/stt/choice+args/webhook+tts)")
    for lv in levels:
        f, a, st = lv["first_audio_ms"], lv["answer_ms"], lv["stages_ms"]
        stage_txt = "/".join(str(st[k]["p50"]) for k in ("endpoint", "stt", "choice_and_arguments", "webhook_and_tts"))
        print(f"  {lv['calls']:>5}  {f['p50']!s:>10}/{f['p95']!s:>10}  {a['p50']!s:>8}/{a['p95']!s:>8}  {lv['right_tool_and_arguments']:>6}  {stage_txt}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
