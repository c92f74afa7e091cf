"""Shared by the dialog tests: an AudioSocket server that runs one CallDialog per call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from audiosocket.server import AudioSocketServer, CallSession
from models.engines import Engines
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog


@dataclass
class DialogServer:
    port: int = 0
    dialogs: list[CallDialog] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the first call's dialog returned


@contextlib.asynccontextmanager
async def dialog_server(engines: Engines, config: AgentConfig, **dialog_kw: Any) -> AsyncIterator[DialogServer]:
    """Listening on 127.0.0.1 (a free port); `dialog_kw` go to CallDialog (store, tools, ...)."""
    served = DialogServer()

    async def handler(session: CallSession) -> None:
        d = CallDialog(engines, config, **dialog_kw)
        served.dialogs.append(d)
        try:
            await d.run(session)
        finally:
            served.done.set()

    srv = AudioSocketServer(handler, "127.0.0.1", 0)
    await srv.start()
    served.port = srv.port
    try:
        yield served
    finally:
        await srv.close()
