"""The ARI controller against the real Asterisk test bed, for tests: an AudioSocket server, the
controller and its client, and a per-call agent script. Callers and humans are Local channels
running the test dialplan (asterisk/extensions.conf [phoneagent-test]).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ari_app.call import AriCall
from ari_app.client import AriClient
from ari_app.config import ControllerConfig
from ari_app.controller import AriController
from audiosocket.protocol import Dtmf
from audiosocket.server import AudioSocketServer, CallEnded, CallSession
from devtools import testbed
from devtools.testbed import ari_request
from devtools.testbed_ari import ari_config

Script = Callable[["AgentCall"], Coroutine[Any, Any, None]]
Agent = Callable[[CallSession, AriCall | None], Awaitable[None]]  # a whole agent (the dialog)


@dataclass
class AgentCall:
    """What the test agent saw of one call."""

    session: CallSession
    control: AriCall | None
    digits: list[str] = field(default_factory=list)
    ended: CallEnded | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Stack:
    bed: testbed.AsteriskBed
    ctl: AriController
    client: AriClient
    server: AudioSocketServer
    calls: list[AgentCall]
    run_task: asyncio.Task[None]


def client_for(bed: testbed.AsteriskBed, **kw: Any) -> AriClient:
    return AriClient(ari_config(bed), **kw)


@contextlib.asynccontextmanager
async def ari_stack(bed: testbed.AsteriskBed, script: Script | None = None, *, client: AriClient | None = None,
                    store: Any = None, check_clean: bool = True, agent: Agent | None = None,
                    **config: Any) -> AsyncIterator[Stack]:
    """Run server + controller; the agent runs `script` per call while draining audio/DTMF
    (or, with `agent`, that agent runs the call)."""
    calls: list[AgentCall] = []
    holder: dict[str, AriController] = {}

    async def handler(session: CallSession) -> None:
        call = AgentCall(session, holder["ctl"].attach(str(session.call_id)))
        calls.append(call)
        if agent is not None:
            try:
                await agent(session, call.control)
            finally:
                call.done.set()
            return
        task = asyncio.create_task(script(call)) if script else None
        try:
            while True:
                item = await session.receive()
                if isinstance(item, Dtmf):
                    call.digits.append(item.digit)
                elif isinstance(item, CallEnded):
                    call.ended = item
                    return
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            call.done.set()

    server = AudioSocketServer(handler, "127.0.0.1", 0)
    await server.start()
    client = client or client_for(bed)
    config.setdefault("audiosocket_address", f"127.0.0.1:{server.port}")
    ctl = AriController(client, ControllerConfig(**config), store=store)
    holder["ctl"] = ctl
    try:
        async with ctl.running() as run_task:
            yield Stack(bed, ctl, client, server, calls, run_task)
    finally:
        await server.close()
        await client.aclose()
    if check_clean:
        await assert_nothing_left(bed)


async def assert_nothing_left(bed: testbed.AsteriskBed, timeout: float = 8.0) -> None:
    """No channel and no bridge is left in Asterisk (checked through ARI)."""
    deadline = time.monotonic() + timeout
    while True:
        chans = await asyncio.to_thread(ari_request, bed, "GET", "/channels")
        bridges = await asyncio.to_thread(ari_request, bed, "GET", "/bridges")
        if not chans and not bridges:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: channels {[c['name'] for c in chans]}, bridges {[b['id'] for b in bridges]}")
        await asyncio.sleep(0.1)


async def call_in(bed: testbed.AsteriskBed, behaviour: str, variables: dict[str, str] | None = None) -> str:
    """A caller: Local/<behaviour>@phoneagent-test (its ;2 half plays the caller) whose ;1 half
    dials the agent's ARI path. Returns the ;1 channel id (the channel in our Stasis app)."""
    chan = await asyncio.to_thread(ari_request, bed, "POST", "/channels", {
        "endpoint": f"Local/{behaviour}@{testbed.TEST_CONTEXT}", "context": testbed.TEST_CONTEXT,
        "extension": "agent-ari", "priority": "1", "timeout": "30"}, {"variables": variables or {}})
    return str(chan["id"])


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def ready_call(stack: Stack, timeout: float = 10.0) -> AgentCall:
    await wait_until(lambda: bool(stack.calls) and stack.calls[-1].control is not None, timeout, "the agent's call")
    call = stack.calls[-1]
    assert call.control is not None
    await asyncio.wait_for(call.control.ready.wait(), timeout)
    return call


async def wait_file(path: Path, timeout: float = 10.0) -> Path:
    """Asterisk finishes a recording file shortly after the channel ends."""
    await wait_until(path.exists, timeout, f"{path}")
    size = -1
    while path.stat().st_size != size:
        size = path.stat().st_size
        await asyncio.sleep(0.2)
    return path


def read_wav(path: Path) -> tuple[np.ndarray[Any, np.dtype[np.int16]], int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16), w.getframerate()


def tones_per_second(path: Path, min_dbfs: float = -40.0) -> list[int]:
    """The dominant frequency (Hz) of each second of a recording; 0 where it is quieter than min_dbfs."""
    x, rate = read_wav(path)
    out = []
    for i in range(0, len(x) - rate // 2, rate):
        seg = x[i:i + rate].astype(np.float64)
        level = 20 * np.log10(np.sqrt(np.mean(seg ** 2)) / 32768 + 1e-12)
        spectrum = np.abs(np.fft.rfft(seg))
        out.append(int(round(np.fft.rfftfreq(len(seg), 1 / rate)[int(spectrum.argmax())])) if level > min_dbfs else 0)
    return out
