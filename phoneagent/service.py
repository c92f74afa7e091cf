"""Composition root: builds the parts and wires them together. The only module that imports
everything; audiosocket/ and ari_app/ never import the dialog side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from audiosocket.server import AudioSocketServer, Handler
from phoneagent.echo_agent import EchoAgent

log = logging.getLogger(__name__)


def build_handler(kind: str = "echo") -> Handler:
    """The per-call handler. Only the echo/tone agent exists so far; the dialog loop comes next."""
    if kind == "echo":
        return EchoAgent()
    raise ValueError(f"unknown agent kind {kind!r}; available: echo")


async def serve(host: str, port: int, *, agent: str = "echo", shutdown_grace: float = 5.0) -> None:
    """Run the AudioSocket service until SIGINT/SIGTERM, then shut down gracefully."""
    server = AudioSocketServer(build_handler(agent), host, port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    log.info("phoneagent serving AudioSocket on %s:%d (agent=%s); Ctrl-C to stop", host, server.port, agent)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: ending %d live call(s)", len(server.sessions))
        await server.close(grace=shutdown_grace)
