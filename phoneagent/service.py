"""Composition root: builds the parts and wires them together. The only module that imports
everything; audiosocket/ and ari_app/ never import the dialog side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from collections.abc import Awaitable, Callable

from audiosocket.server import AudioSocketServer, CallSession, Handler
from phoneagent.echo_agent import EchoAgent

log = logging.getLogger(__name__)


async def build_handler(kind: str, db_url: str) -> tuple[Handler, Callable[[], Awaitable[None]]]:
    """The per-call handler and its clean-up. "dialog" loads and warms every engine first, so
    the first caller never waits for a model load; "echo" is the media-path check."""
    if kind == "echo":
        async def nothing() -> None:
            return None

        return EchoAgent(), nothing
    if kind != "dialog":
        raise ValueError(f"unknown agent kind {kind!r}; available: dialog, echo")
    from db import AsyncCallStore
    from models.engines import EngineConfig, Engines
    from phoneagent.dialog.session import AgentConfig, CallDialog

    engines = await asyncio.to_thread(Engines.load, EngineConfig())
    store = AsyncCallStore(db_url)
    config = AgentConfig()

    async def handler(session: CallSession) -> None:
        await CallDialog(engines, config, store=store).run(session)

    async def close() -> None:
        await engines.close()
        await store.aclose()

    return handler, close


async def serve(host: str, port: int, *, agent: str = "dialog", db_url: str = "sqlite:///phoneagent.db", shutdown_grace: float = 5.0) -> None:
    """Run the AudioSocket service until SIGINT/SIGTERM, then shut down gracefully."""
    handler, close_handler = await build_handler(agent, db_url)
    server = AudioSocketServer(handler, host, port)
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
        await server.close(grace=shutdown_grace)  # calls first: they still use the engines
        await close_handler()
