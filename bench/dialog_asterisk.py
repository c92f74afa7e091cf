"""The dialog benchmark end to end through the real Asterisk: SIP caller -> Asterisk -> agent.

    .venv/bin/python -m bench.dialog_asterisk [--calls 3] [--path direct|ari] [--out bench/results]

SIPp places G.711 calls to the bundled Asterisk 22: `--path direct` runs the `agent-direct`
dialplan (Dial(AudioSocket/...c(slin16))); `--path ari` sends the caller to Stasis, where the
ARI controller bridges it to an externalMedia (AudioSocket slin16) channel, as in production. Each caller waits out the greeting, asks a question, and ~1.5 s into the answer talks
over the agent. Asterisk's MixMonitor records the SIP leg's two directions from the same instant
(`-said.wav`: what the caller sent, `-heard.wav`: what the caller heard), so latencies are read
on Asterisk's side of the call, including everything Asterisk adds:
- v2v: end of the question in `said` -> first agent speech in `heard` after it;
- barge-in stop: onset of the interruption in `said` -> last agent speech in `heard` before the
  agent's next answer.
Compare with bench/dialog.py (same agent, emulated Asterisk on the socket) to see what Asterisk adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ari_app.client import AriClient
from ari_app.config import ControllerConfig, RecordingConfig
from ari_app.controller import AriController
from media.pcm import resample, talk_spurts, voiced_frames
from audiosocket.server import AudioSocketServer, CallSession
from bench.dialog import INTERRUPTION, QUESTIONS, pct, turn_model, voiced_bounds, with_end_of_turn
from bench.machine import machine_info, save_results
from devtools.utterances import synthesize_set
from models.engines import EngineConfig, Engines
from devtools import sipcall, testbed
from devtools.testbed_ari import ari_config
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog

GREETING_WAIT_MS = 3000
ANSWER_BEFORE_BARGE_MS = 2800  # after the question: endpoint + ~1 s of answer


def read_wav(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.readframes(w.getnframes())


def analyse(said: tuple[int, bytes], heard: tuple[int, bytes]) -> tuple[float | None, float | None]:
    """(v2v_ms, barge_in_stop_ms) from the two aligned MixMonitor files."""
    s_rate, s_pcm = said
    h_rate, h_pcm = heard
    agent = voiced_frames(h_pcm, h_rate)
    # caller talk spurts: gaps > 0.5 s separate the question from the interruption
    spurts = talk_spurts(s_pcm, s_rate, gap_s=0.5)
    if not spurts or not agent:
        return None, None
    q_end = spurts[0][1]
    first_answer = next((t for t in agent if t >= q_end), None)
    v2v = (first_answer - q_end) * 1000 if first_answer is not None else None
    stop = None
    if len(spurts) >= 2 and first_answer is not None:
        onset = spurts[1][0]
        before = [t + 0.02 for t in agent if onset - 1.0 <= t <= onset + 1.2]
        if before and min(before) < onset:  # the agent was talking when the caller cut in
            # the agent's last voiced frame in the first 1.2 s after the onset (its next answer
            # cannot start that soon: the interruption itself lasts ~2 s)
            stop = max(0.0, (max(before) - onset) * 1000)
    return v2v, stop


async def run(calls: int, path: str = "direct", end_of_turn: str = "") -> dict[str, Any]:
    bed = testbed.ensure()
    engines = await asyncio.to_thread(Engines.load, EngineConfig())
    utts = synthesize_set()
    cfg = with_end_of_turn(AgentConfig(greeting="Hello, how can I help?", max_reply_tokens=48), end_of_turn)
    dialogs: list[CallDialog] = []

    controller: AriController | None = None

    async def handler(session: CallSession) -> None:
        control = controller.attach(str(session.call_id)) if controller is not None else None
        d = CallDialog(engines, cfg, control=control)
        dialogs.append(d)
        await d.run(session)

    server = AudioSocketServer(handler, "127.0.0.1", 0)
    await server.start()
    exten = f"agent-port-{server.port}" if path == "direct" else "agent-ari-rec"
    v2v: list[float] = []
    stops: list[float] = []
    failures: list[str] = []
    async with contextlib.AsyncExitStack() as stack:  # on exit: ARI first, then server, engines
        stack.push_async_callback(engines.close)
        stack.push_async_callback(server.close)
        if path == "ari":
            client = AriClient(ari_config(bed))
            stack.push_async_callback(client.aclose)
            controller = AriController(client, ControllerConfig(audiosocket_address=f"127.0.0.1:{server.port}",
                                                                recording=RecordingConfig(enabled=False)))
            await stack.enter_async_context(controller.running())
        for i in range(calls):
            q = resample(utts[QUESTIONS[i % len(QUESTIONS)]].pcm16k, 16000, 8000)
            interrupt = resample(utts[INTERRUPTION].pcm16k, 16000, 8000)
            q_len_ms = int(voiced_bounds(q, 8000)[1] * 1000) + 100
            script: list[sipcall.Step] = [
                sipcall.Pause(GREETING_WAIT_MS), sipcall.Audio(q[: q_len_ms * 16]), sipcall.Pause(ANSWER_BEFORE_BARGE_MS),
                sipcall.Audio(interrupt), sipcall.Pause(6000),
            ]
            rec = f"bench-{uuid.uuid4().hex[:10]}"
            result = await asyncio.to_thread(sipcall.place_call, bed.sip_host, bed.sip_port, exten, script, headers={"X-Phoneagent-Rec": rec})
            if not result.ok:
                failures.append(f"SIPp rc={result.returncode}: {result.errors[-300:]}")
                continue
            paths = {k: bed.host_path(f"{testbed.RECORDING_DIR}/{rec}-{k}.wav") for k in ("said", "heard", "both")}
            deadline = time.monotonic() + 5
            while not (paths["said"].exists() and paths["heard"].exists()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            a, b = analyse(read_wav(paths["said"]), read_wav(paths["heard"]))
            for p in paths.values():
                p.unlink(missing_ok=True)
            if a is not None:
                v2v.append(a)
            if b is not None:
                stops.append(b)
    return {"calls": calls, "v2v_ms": pct(v2v), "barge_in_stop_ms": pct(stops), "failures": failures,
            "asterisk": bed.health().version, "end_of_turn_model": turn_model(dialogs) if cfg.end_of_turn_model else None, "samples": {"v2v_ms": [round(x) for x in v2v], "barge_in_stop_ms": [round(x) for x in stops]}}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3, help="calls placed one after another")
    ap.add_argument("--path", choices=("direct", "ari"), default="direct",
                    help="direct: Dial(AudioSocket); ari: Stasis + ARI controller + externalMedia")
    ap.add_argument("--end-of-turn", default="", metavar="ABOVE,BELOW[,DELAY]", help="use the end-of-turn model (see bench.dialog)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    res = asyncio.run(run(args.calls, args.path, args.end_of_turn))
    route = ("SIPp G.711 -> Asterisk 22 -> AudioSocket slin16 -> agent" if args.path == "direct" else
             "SIPp G.711 -> Asterisk 22 -> Stasis: ARI bridge + externalMedia AudioSocket slin16 -> agent")
    out = {"machine": info, "device": info["device"], "path": route, "end_of_turn": args.end_of_turn or None, **res}
    name = ("dialog-asterisk" if args.path == "direct" else "dialog-asterisk-ari") + (
        f"-eot-{args.end_of_turn.replace(',', '-')}" if args.end_of_turn else "")
    path = save_results(args.out, name, out)
    v, b = res["v2v_ms"], res["barge_in_stop_ms"]
    print(f"dialog through Asterisk {res['asterisk']} on {info['cpu']} ({info['cores']} cores), device {info['device']}")
    print(f"  calls {res['calls']}: v2v p50/p95/max {v['p50']}/{v['p95']}/{v['max']} ms; barge-in stop p50/p95 {b['p50']}/{b['p95']} ms; failures {len(res['failures'])}")
    print(f"  samples: {res['samples']}")
    if res["end_of_turn_model"]:
        print(f"  end-of-turn model: {res['end_of_turn_model']}")
    print(f"\nwritten {path}")
    return 0 if not res["failures"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
