"""The service as a user runs it: `phoneagent serve` (signals, graceful shutdown) and `phoneagent demo`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from audiosocket import protocol as p
from audiosocket.client import AudioSocketClient
from phoneagent.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_answers_then_sigterm_hangs_up_calls_and_exits_cleanly() -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phoneagent.cli", "serve", "--agent", "echo", "--port", str(port),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        for _ in range(200):
            try:
                client = await AudioSocketClient.connect("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("service did not start listening")
        await client.send_audio(bytes(640), 16000)
        greeting = []
        while len(greeting) < 5:
            ev = await client.recv()
            if isinstance(ev, p.Audio) and any(ev.pcm):
                greeting.append(ev)
        assert all(ev.sample_rate == 16000 and len(ev.pcm) == 640 for ev in greeting)
        proc.send_signal(signal.SIGTERM)
        seen: list[p.Event] = []
        while not seen or not isinstance(seen[-1], (p.Hangup, p.Closed)):
            seen.append(await client.recv())
        assert isinstance(seen[-1], p.Hangup), "a live call must get a 0x00 hangup on shutdown"
        await client.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        out = (await proc.stdout.read()).decode() if proc.stdout else ""
        assert "ended: EndReason.SHUTDOWN" in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.asterisk
async def test_echo_demo_places_a_real_call(asterisk_bed, capsys) -> None:  # type: ignore[no-untyped-def]
    assert await run_demo(agent="echo") == 0
    out = capsys.readouterr().out
    assert "RESULT: call answered by the agent" in out
    assert "dtmf_digits            42" in out


@pytest.mark.asterisk
async def test_demo_agent_answers_a_spoken_question_through_asterisk(asterisk_bed, capsys) -> None:  # type: ignore[no-untyped-def]
    """The README main job: real SIP call, real Asterisk, real models; the caller's heard audio
    (Asterisk's recording of the SIP leg) is transcribed and must contain the agent's words."""
    assert await run_demo(as_json=True) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])
    roles = [t["role"] for t in report["turns"]]
    assert roles[:3] == ["agent", "caller", "agent"]
    assert "saturday" in report["turns"][1]["text"].lower()
    assert report["caller_heard (whisper)"].strip()
    assert report["v2v_ms (server wire)"], "the answer's latency was measured"


def test_code_is_typed() -> None:
    """mypy (disallow_untyped_defs) over every package: typed code is a project rule."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "audiosocket", "ari_app", "models", "db", "phoneagent", "bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "MYPY_FORCE_COLOR": "0"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
