"""Composition root: builds the parts and wires them together. The only module that imports
everything; audiosocket/ and ari_app/ never import the dialog side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ari_app.client import AriClient, AriConfig
from ari_app.config import ControllerConfig
from ari_app.controller import AriController
from ari_app.outbound import Dialer, OutboundConfig, OutboundResult
from audiosocket.server import AudioSocketServer, CallSession, Handler
from db import AsyncCallStore
from models.engines import EngineConfig
from phoneagent.echo_agent import EchoAgent

log = logging.getLogger(__name__)


async def build_handler(kind: str, db_url: str, controller: AriController | None = None,
                        store: AsyncCallStore | None = None, engine_config: EngineConfig | None = None,
                        ) -> tuple[Handler, Callable[[], Awaitable[None]]]:
    """The per-call handler and its clean-up. "dialog" loads and warms every engine first, so
    the first caller never waits for a model load; "echo" is the media-path check. With a
    controller, each AudioSocket session is linked to its ARI call by UUID (call control)."""
    if kind == "echo":
        async def nothing() -> None:
            return None

        return EchoAgent(), nothing
    if kind != "dialog":
        raise ValueError(f"unknown agent kind {kind!r}; available: dialog, echo")
    from models.engines import Engines
    from phoneagent.dialog.config import AgentConfig
    from phoneagent.dialog.session import CallDialog

    engines = await asyncio.to_thread(Engines.load, engine_config or EngineConfig())
    own_store = store is None
    calls = store or AsyncCallStore(db_url)
    config = AgentConfig()

    async def handler(session: CallSession) -> None:
        control = controller.attach(str(session.call_id)) if controller is not None else None
        await CallDialog(engines, config, store=calls, control=control).run(session)

    async def close() -> None:
        await engines.close()
        if own_store:
            await calls.aclose()

    return handler, close


@dataclass
class Running:
    server: AudioSocketServer
    controller: AriController | None
    store: AsyncCallStore


@contextlib.asynccontextmanager
async def running(host: str, port: int, *, agent: str = "dialog", db_url: str = "sqlite:///phoneagent.db",
                  shutdown_grace: float = 5.0, ari: AriConfig | None = None,
                  controller_config: ControllerConfig | None = None,
                  engine_config: EngineConfig | None = None) -> AsyncIterator[Running]:
    """The AudioSocket service (and, with `ari`, the ARI controller, connected) while inside."""
    store = AsyncCallStore(db_url)
    client = AriClient(ari) if ari is not None else None
    controller = AriController(client, controller_config or ControllerConfig(audiosocket_address=f"{host}:{port}"),
                               store=store) if client is not None else None
    handler, close_handler = await build_handler(agent, db_url, controller, store, engine_config)
    if controller is not None:
        inner = handler

        async def linked(session: CallSession) -> None:
            controller.attach(str(session.call_id))  # the controller bridges the caller once linked
            await inner(session)

        handler = linked
    server = AudioSocketServer(handler, host, port)
    await server.start()
    try:
        # Order on the way out: ARI calls are torn down first (callers hear a hangup, not
        # silence), then the AudioSocket sessions end (they still use the engines), then
        # engines and store close.
        async with contextlib.AsyncExitStack() as stack:
            if controller is not None:
                await stack.enter_async_context(controller.running(connect_timeout_s=30, must_connect=False, grace=shutdown_grace))
            stack.callback(lambda: log.info("shutting down: ending %d live call(s)", len(server.sessions)))
            yield Running(server, controller, store)
    finally:
        await server.close(grace=shutdown_grace)
        await close_handler()
        if client is not None:
            await client.aclose()
        await store.aclose()


async def serve(host: str, port: int, **kw: Any) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully (see `running` for the options)."""
    async with running(host, port, **kw) as svc:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        log.info("phoneagent serving AudioSocket on %s:%d (agent=%s); Ctrl-C to stop",
                 host, svc.server.port, kw.get("agent", "dialog"))
        await stop.wait()


async def dial(host: str, port: int, numbers: Sequence[str], outbound: OutboundConfig, **kw: Any) -> list[OutboundResult]:
    """Place outbound calls (paced, at most `outbound.max_concurrent` at once) and wait for all
    of them to end; each call's record (answered or not, human or machine) is in the store."""
    async with running(host, port, **kw) as svc:
        if svc.controller is None:
            raise ValueError("dialling needs ARI (an AriConfig)")
        dialer = Dialer(svc.controller, outbound)
        return list(await asyncio.gather(*(dialer.call(n) for n in numbers)))
