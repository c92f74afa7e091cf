"""The service as a user runs it: `phoneagent serve` (signals, graceful shutdown), `dial`, and
`python -m devtools demo` (the demo call through the same composition root)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from audiosocket import protocol as p
from audiosocket.client import AudioSocketClient
from devtools.demo import run_demo
from devtools.ports import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]



async def _connect_when_listening(port: int, tries: int = 1200, pause_s: float = 0.1) -> AudioSocketClient:
    """The service's first call, once it listens (loading the engines takes tens of seconds)."""
    for _ in range(tries):
        try:
            return await AudioSocketClient.connect("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(pause_s)
    raise AssertionError("service did not start listening")


async def test_serve_answers_then_sigterm_hangs_up_calls_and_exits_cleanly(tmp_path: Path) -> None:
    port = free_tcp_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phoneagent.cli", "--log-json", "serve", "--agent", "echo", "--port", str(port),
        "--db", f"sqlite:///{tmp_path}/calls.db",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        client = await _connect_when_listening(port, 200, 0.05)
        await client.send_audio(bytes(640), 16000)
        greeting: list[p.Audio] = []
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
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        ended = [line for line in lines if "ended: EndReason.SHUTDOWN" in line["msg"]]
        assert ended and ended[0]["call_id"] in ended[0]["msg"], lines  # --log-json: the line carries its call's id
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
async def test_demo_shipments_agent_answers_from_the_business_system(asterisk_bed, capsys) -> None:  # type: ignore[no-untyped-def]
    """The README main job, through the real parts: a SIP caller (espeak-ng over G.711) asks the
    shipments agent file's agent (bundled Qwen instruct model, real webhook) about order 4572 in
    the sample backend. The tool gets the right arguments, the record has the tool call, and
    what the caller heard (Asterisk's recording of the SIP leg, transcribed by whisper) carries
    the order's real status from the webhook; the caller's goodbye ends the call."""
    assert await run_demo(as_json=True) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])
    roles = [t["role"] for t in report["turns"]]
    assert roles[:3] == ["agent", "caller", "agent"]
    calls = report["tool calls (stored)"]
    assert calls and calls[0]["name"] == "order_status" and calls[0]["arguments"] == {"order_id": "4572"} and calls[0]["ok"]
    assert calls[0]["result"]["status"] == "delayed"
    heard = report["caller_heard (whisper)"].lower()
    assert "delayed" in heard and "storm" in heard and "december 9" in heard
    assert report["turns"][2]["voice_to_voice_ms"] is not None, "the answer's latency was measured"
    assert report["outcome"] == "completed" and report["sip_call_ok"]


def test_code_is_typed() -> None:
    """mypy (disallow_untyped_defs) over every package: typed code is a project rule."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "audiosocket", "ari_app", "models", "db", "phoneagent", "bench", "media", "devtools"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "MYPY_FORCE_COLOR": "0"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_serve_with_ari_bridges_a_caller_and_cleans_up_on_sigterm(asterisk_bed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`phoneagent serve --ari`: a caller sent to Stasis(phoneagent) is bridged to the agent;
    SIGTERM tears the call down (no channel or bridge left) and the service exits 0."""
    from devtools.testbed import ari_request
    from tests.ari.harness import assert_nothing_left, call_in

    port = free_tcp_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phoneagent.cli", "serve", "--agent", "echo", "--port", str(port), "--ari",
        "--db", f"sqlite:///{tmp_path}/calls.db",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=_ari_env(asterisk_bed),
    )
    try:
        for _ in range(200):  # the controller registers the Stasis app once connected
            apps = await asyncio.to_thread(ari_request, asterisk_bed, "GET", "/applications")
            if any(a["name"] == asterisk_bed.ari_app for a in apps):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the ARI controller never connected")
        caller = await call_in(asterisk_bed, "silence")
        for _ in range(200):
            bridges = await asyncio.to_thread(ari_request, asterisk_bed, "GET", "/bridges")
            if any(caller in b["channels"] and len(b["channels"]) == 2 for b in bridges):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the caller was never bridged to the agent")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        await assert_nothing_left(asterisk_bed)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_dial_places_outbound_calls_and_reports_each(asterisk_bed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`phoneagent dial`: a busy number and an answered one (the echo agent takes it; the test
    extension hangs up after 4 s); both stored; nothing left in Asterisk."""
    from tests.ari.harness import assert_nothing_left

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phoneagent.cli", "dial", "human-busy", "human-hangup", "--agent", "echo",
        "--endpoint", "Local/{number}@phoneagent-test", "--port", str(free_tcp_port()), "--interval", "0.2",
        "--db", f"sqlite:///{tmp_path}/calls.db", "--json",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=_ari_env(asterisk_bed),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    results = {r["number"]: r for r in json.loads(out)}
    assert results["human-busy"]["outcome"] == "busy"
    assert results["human-hangup"]["outcome"] == "answered"
    await assert_nothing_left(asterisk_bed)


def _ari_env(bed: Any) -> dict[str, str]:
    """The product takes ARI credentials from the environment only (as a user deploys it)."""
    return {**os.environ, "PHONEAGENT_ARI_USER": bed.ari_user, "PHONEAGENT_ARI_PASSWORD": bed.ari_password}


def test_dial_rejects_a_bad_endpoint_template() -> None:
    proc = subprocess.run([sys.executable, "-m", "phoneagent.cli", "dial", "123", "--endpoint", "PJSIP/trunk"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "needs {number}" in proc.stderr and "Traceback" not in proc.stderr


async def test_a_call_cut_by_a_killed_service_is_closed_as_interrupted_at_the_next_start(tmp_path: Path) -> None:
    """kill -9 mid-call leaves the call's record open; the next start of the service finishes
    it as "interrupted" before it takes a call (nothing is left looking live forever)."""
    from db import CallStore

    url = f"sqlite:///{tmp_path}/calls.db"

    async def start(agent: str) -> tuple[asyncio.subprocess.Process, int]:
        port = free_tcp_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "phoneagent.cli", "serve", "--agent", agent, "--port", str(port), "--db", url, "--skip-preflight",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        return proc, port

    proc, port = await start("dialog")
    try:
        client = await _connect_when_listening(port)
        await client.send_audio(bytes(640), 16000)
        for _ in range(100):
            with CallStore(url) as store:
                calls = store.list_calls()
            if calls:
                break
            await asyncio.sleep(0.1)
        assert calls and calls[0].ended_at is None, "the call was not recorded as started"
        proc.kill()
        await proc.wait()
        await client.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    with CallStore(url) as store:
        assert store.get_call(calls[0].id).ended_at is None  # type: ignore[union-attr]  # a kill finishes nothing
    proc, port = await start("echo")
    try:
        for _ in range(200):
            try:
                await (await AudioSocketClient.connect("127.0.0.1", port)).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        with CallStore(url) as store:
            call = store.get_call(calls[0].id)
        assert call is not None and (call.end_reason, call.outcome) == ("interrupted", "interrupted")
    finally:
        proc.terminate()
        await proc.wait()


async def test_serve_exposes_prometheus_metrics_and_health(tmp_path: Path) -> None:
    """`--http-port`: /metrics in the Prometheus text format (parsed by the official client),
    /healthz; both on loopback."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    port, http_port = free_tcp_port(), free_tcp_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phoneagent.cli", "serve", "--agent", "echo", "--port", str(port), "--http-port", str(http_port),
        "--db", f"sqlite:///{tmp_path}/calls.db", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{http_port}/healthz") as r:
                        state = await r.json()
                        if r.status == 503 and not state["audiosocket"]:  # up, not listening yet
                            await asyncio.sleep(0.05)
                            continue
                        assert r.status == 200 and state == {"ok": True, "audiosocket": True, "ari": None, "calls": 0,
                                                             "max_calls": None, "instance": socket.gethostname()}, state
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("no /healthz")
            async with http.get(f"http://127.0.0.1:{http_port}/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                text = await r.text()
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"phoneagent_calls_active", "phoneagent_calls", "phoneagent_turn_stage_seconds", "phoneagent_events",
                "phoneagent_tool_calls", "phoneagent_transfers", "phoneagent_amd"} <= names
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_database_stopped_mid_call_then_back_the_spool_replays_and_nothing_is_lost(tmp_path: Path) -> None:
    """The service on a real PostgreSQL that stops while a call is live: the call goes on, its
    end is kept in the spool, and once the database is back the service replays it unprompted."""
    from db import CallStore
    from devtools.postgres import Postgres

    with Postgres() as pg:
        url, spool, port = pg.create_database(), tmp_path / "spool.jsonl", free_tcp_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "phoneagent.cli", "serve", "--port", str(port), "--db", url, "--db-spool", str(spool),
            "--skip-preflight", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            client = await _connect_when_listening(port)
            await client.send_audio(bytes(640), 16000)

            async def stored() -> Any:
                with CallStore(url) as store:
                    calls = store.list_calls()
                    return store.get_call(calls[0].id) if calls else None

            call = None
            for _ in range(300):  # the greeting is played and stored as the agent's first turn
                await client.send_audio(bytes(640), 16000)
                call = await stored()
                if call is not None and call.turns:
                    break
                await asyncio.sleep(0.1)
            assert call is not None and call.turns and call.ended_at is None, call
            pg.stop()  # the database host goes away while the call is live
            await client.send_audio(bytes(640), 16000)
            await client.send_hangup()
            await client.close()
            for _ in range(100):
                if spool.exists() and "finish_call" in spool.read_text():
                    break
                await asyncio.sleep(0.1)
            assert "finish_call" in spool.read_text(), "the call's end was not kept while the database was down"
            assert proc.returncode is None, "the service must ride out a database outage"
            pg.start()
            for _ in range(200):  # replayed by the service's own timer: nothing else writes now
                after = await stored()
                if after is not None and after.ended_at is not None:
                    break
                await asyncio.sleep(0.1)
            assert after is not None and after.end_reason == "caller_hangup" and after.turns[0].text == call.turns[0].text
            assert not spool.exists()
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


async def test_serve_mounts_the_console_only_with_a_token(tmp_path: Path) -> None:
    """PHONEAGENT_CONSOLE_TOKEN (or console_token in the config) opens the console at /console on
    the HTTP port; without one the console does not exist; a short token stops the start."""
    import aiohttp

    async def serve(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, int]:
        port, http_port = free_tcp_port(), free_tcp_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "phoneagent.cli", "serve", "--agent", "echo", "--port", str(port), "--http-port", str(http_port),
            "--db", f"sqlite:///{tmp_path}/calls.db", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
            env={**os.environ, **env})
        return proc, http_port

    async def status(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
        for _ in range(200):
            try:
                async with http.get(url, allow_redirects=False) as r:
                    return r.status, r.headers.get("Content-Security-Policy", "")
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"nothing at {url}")

    async with aiohttp.ClientSession() as http:
        for env, login, home in (({"PHONEAGENT_CONSOLE_TOKEN": "0123456789abcdef0123"}, 200, 303), ({}, 404, 404)):
            proc, http_port = await serve(env)
            try:
                code, csp = await status(http, f"http://127.0.0.1:{http_port}/console/login")
                assert code == login and (code != 200 or "default-src 'none'" in csp)
                assert (await status(http, f"http://127.0.0.1:{http_port}/console/"))[0] == home
            finally:
                proc.terminate()
                assert await asyncio.wait_for(proc.wait(), 10) == 0
    proc, _ = await serve({"PHONEAGENT_CONSOLE_TOKEN": "short"})
    assert await asyncio.wait_for(proc.wait(), 30) == 2
    assert proc.stderr is not None and b"at least 16 characters" in await proc.stderr.read()
