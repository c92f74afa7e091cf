"""Composition root: builds the parts and wires them together. The only module that imports
everything; audiosocket/ and ari_app/ never import the dialog side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import uuid

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from ari_app.call import AriCall
from ari_app.client import AriClient, AriConfig
from ari_app.config import ControllerConfig
from ari_app.controller import AriController
from ari_app.outbound import Dialer, OutboundConfig, OutboundResult
from audiosocket.server import AudioSocketServer, CallSession, Handler
from db import AsyncCallStore, CallStore
from models.engines import EngineConfig
from phoneagent.agents.load import Agent, default_agent as default_agent_config
from phoneagent.echo_agent import EchoAgent
from phoneagent.dialog.tasks import stop as stop_task
from phoneagent.admission import BUSY_MESSAGE, Admission, BusyMessage, turn_away
from phoneagent.console.app import console_app
from phoneagent.console.live import LiveCalls
from phoneagent.metrics import CallMetrics, MeteredStore, metrics_app

log = logging.getLogger(__name__)

SPOOL_REPLAY_S = 5.0  # how often spooled call-log writes are retried
HEARTBEAT_S = 5.0  # how often this host tells the shared records it is alive
HOST_TIMEOUT_S = 60.0  # silent this long, a host is dead: another finishes its open calls (well past the 15 s lease)


Handlers = Callable[[str], Handler]  # agent name -> that agent's per-call handler
CLAIM_SPREAD_S = 0.3  # a host at its max_calls would wait this long to claim a broadcast call (it does not: it is full)


class Controllers:
    """The ARI controllers of one service, one per Asterisk it takes calls from. An AudioSocket
    session is linked to its call through the controller that made the call."""

    def __init__(self, items: Sequence[AriController]) -> None:
        self.items = list(items)

    def _owner(self, call_id: str) -> AriController | None:
        return next((c for c in self.items if call_id in c.calls), None)

    def attach(self, call_id: str) -> AriCall | None:
        owner = self._owner(call_id)
        return owner.attach(call_id) if owner is not None else None

    def call(self, call_id: str) -> AriCall | None:
        owner = self._owner(call_id)
        return owner.calls[call_id] if owner is not None else None

    @property
    def active(self) -> int:
        """Calls running here, and calls claimed here that have not started yet."""
        return sum(len(c.calls) + len(c.claimed) for c in self.items)


def claim_delay(active: int, max_calls: int | None) -> float | None:
    """How long this host waits before claiming a call StasisBroadcast() offers: nothing when
    idle, longer as it fills (so the least-loaded host tends to claim first), never when full."""
    if max_calls is not None:
        return None if active >= max_calls else CLAIM_SPREAD_S * active / max_calls
    return CLAIM_SPREAD_S * active / (active + 4)


def claim_offers(group: Controllers, max_calls: int | None) -> None:
    """This host claims StasisBroadcast() offers from all its Asterisk servers one at a time (one
    shared lock), each delay from the whole host's load: two calls offered at once by two servers
    would otherwise both be judged idle, and the quicker host would take both."""
    claiming = asyncio.Lock()
    for c in group.items:
        c.claim_delay = lambda: claim_delay(group.active, max_calls)
        c.claiming = claiming


def pool_id_prefix(app: str) -> str:
    """Channel and bridge ids of one agent host: the start-up sweep removes what has its prefix,
    so hosts that share an Asterisk (each its own app) must not share one. The single-host app
    keeps "pa-"; others get "pa" + a hash of the app name (never a prefix of another's)."""
    return "pa-" if app == "phoneagent" else f"pa{hashlib.sha1(app.encode()).hexdigest()[:8]}-"


async def build_handlers(kind: str, db_url: str, controller: AriController | Controllers | None = None,
                         store: AsyncCallStore | None = None, engine_config: EngineConfig | None = None,
                         agents: Mapping[str, Agent] | None = None, default_agent: str = "", metrics: CallMetrics | None = None,
                         dialogs: dict[str, Any] | None = None, admission: Admission | None = None,
                         busy_message: str = BUSY_MESSAGE) -> tuple[Handlers, Callable[[], Awaitable[None]]]:
    """Per-call handlers (one per agent) and their clean-up. "dialog" loads and warms every
    engine the agents need first, so the first caller never waits for a model load; "echo"
    is the media-path check. With a controller, each AudioSocket session is linked to its ARI
    call by UUID (call control), and the agent the dialplan asked for takes it. `dialogs`, when
    given, holds each call's CallDialog by call id while it runs (the console's transfer button).
    `admission`: past its max_calls a new call hears `busy_message` and is sent on or hung up."""
    if kind == "echo":
        async def nothing() -> None:
            return None

        echo = EchoAgent()

        return (lambda _name: echo), nothing
    if kind != "dialog":
        raise ValueError(f"unknown agent kind {kind!r}; available: dialog, echo")
    from models.engines import Engines
    from models.base import Message
    from models.scheduler import Priority
    from phoneagent.dialog.actions import system_prompt
    from phoneagent.dialog.session import CallDialog
    from phoneagent.dialog.voice import Phrases, synthesise_ahead
    from phoneagent.tools.webhook import ToolRunner

    agents = dict(agents or {"default": default_agent_config()})
    default = default_agent or next(iter(agents))
    if default not in agents:
        raise ValueError(f"default agent {default!r} is not one of the agents: {', '.join(sorted(agents))}")
    base = engine_config or EngineConfig()
    names = list(agents)
    variants = [replace(base, llm=a.llm or base.llm, stt=a.stt or base.stt, tts=a.voice or base.tts, language=a.config.language)
                for a in agents.values()]
    loaded = await asyncio.to_thread(Engines.load_variants, base, variants)
    engines = dict(zip(names, loaded))
    if metrics is not None:
        for i, e in enumerate({id(e): e for e in loaded}.values()):
            metrics.watch_engines(str(i), e.metrics)
    # An agent's instructions, evaluated into every instance of its LLM: once per loaded LLM
    # (agents that share one would only overwrite each other's cache), the default agent's first.
    warmed: set[int] = set()
    for name in sorted(agents, key=lambda n: n != default):
        if id(engines[name].llm) not in warmed:
            warmed.add(id(engines[name].llm))
            prompt = system_prompt(agents[name].config)
            await engines[name].prefill([Message("system", prompt)], every_instance=True, priority=Priority.TURN)
    busy = None
    if admission is not None and admission.max_calls is not None:
        busy = BusyMessage(busy_message, await synthesise_ahead(engines[default].tts, busy_message))
    runners = {a.name: ToolRunner(a.webhooks, a.allowed_hosts) for a in agents.values() if a.webhooks}
    phrases: dict[str, Phrases] = {name: {} for name in agents}  # fillers, synthesised once per agent
    for name, agent in agents.items():  # the fallback ahead: said even when the TTS fails mid-call
        phrases[name].update(await synthesise_ahead(engines[name].tts, agent.config.fallback))
    own_store = store is None
    calls = store or AsyncCallStore(db_url)

    def handler_for(name: str) -> Handler:
        async def handler(session: CallSession) -> None:
            control = controller.attach(str(session.call_id)) if controller is not None else None
            chosen = control.agent if control is not None and control.agent else name
            agent = agents.get(chosen) or agents[default]
            if admission is not None and busy is not None and not admission.enter(session):
                why = f"the service was full ({admission.active} calls in progress, max_calls {admission.max_calls})"
                log.warning("call %s turned away: %s", session.call_id, why)
                await turn_away(session, control, calls, busy, agent=agent.name, why=why)
                return
            dialog = CallDialog(engines[agent.name], agent.config, store=calls, control=control, tools=runners.get(agent.name),
                                phrases=phrases[agent.name])
            if dialogs is not None:
                dialogs[str(session.call_id)] = dialog
            try:
                await dialog.run(session)
            finally:
                if dialogs is not None:
                    dialogs.pop(str(session.call_id), None)
                if admission is not None and busy is not None:
                    admission.leave(session)

        return handler

    async def close() -> None:
        for runner in runners.values():
            await runner.aclose()
        for e in {id(e): e for e in loaded}.values():
            await e.close()
        if own_store:
            await calls.aclose()

    return handler_for, close


def _readiness(servers: Sequence[AudioSocketServer], controllers: Sequence[AriController], admission: Admission,
               instance: str) -> dict[str, Any]:
    """Taking calls: the AudioSocket server listens and, with ARI, a controller is connected
    (Asterisk keeps a dead service's Stasis app listed for a while, so its list cannot tell);
    `asterisks`: which of several is connected. With the load (calls in progress) and the
    capacity (max_calls; null: no limit)."""
    listening = servers[0].listening
    ari = None if not controllers else any(c.connected.is_set() for c in controllers)
    state: dict[str, Any] = {"ok": listening and ari is not False, "audiosocket": listening, "ari": ari, "instance": instance,
             "calls": sum(len(s.sessions) for s in servers), "max_calls": admission.max_calls}
    if len(controllers) > 1:
        state["asterisks"] = {c.client.config.url: c.connected.is_set() for c in controllers}
    return state


@dataclass
class Running:
    server: AudioSocketServer
    controller: AriController | None  # the first Asterisk's (outbound calls go there)
    store: AsyncCallStore
    agent_servers: dict[str, AudioSocketServer]  # direct path: an agent's own port
    metrics: CallMetrics
    http_port: int | None = None  # /metrics and /healthz, where served
    admission: Admission | None = None
    controllers: Sequence[AriController] = ()  # one per Asterisk


@contextlib.asynccontextmanager
async def running(host: str, port: int, *, agent: str = "dialog", db_url: str = "sqlite:///phoneagent.db",
                  db_spool: Path | None = None, shutdown_grace: float = 5.0, ari: AriConfig | Sequence[AriConfig] | None = None,
                  controller_config: ControllerConfig | None = None,
                  engine_config: EngineConfig | None = None, agents: Mapping[str, Agent] | None = None,
                  default_agent: str = "", advertise: str = "", http: tuple[str, int] | None = None,
                  console_token: str = "", max_calls: int | None = None, busy_message: str = BUSY_MESSAGE,
                  overflow: tuple[str, str] | None = None, instance: str = "",
                  host_timeout_s: float = HOST_TIMEOUT_S) -> AsyncIterator[Running]:
    """The AudioSocket service (and, with `ari`, the ARI controller, connected) while inside.
    `agents` (from agent files) each get their own ARI profile and, where set, their own
    AudioSocket port; `advertise` is the host:port Asterisk connects back to (when `host` is
    0.0.0.0, the box's own address); `http` (host, port; port 0: any free one) serves
    /metrics (Prometheus) and /healthz, and with a `console_token` the review console at
    /console; `db_spool` keeps call-log writes while the database is unreachable (replayed every
    few seconds once it is back). `max_calls`: past it a new call hears `busy_message` and goes
    on to `overflow` (dialplan context, extension: a queue) through ARI, or is hung up.
    `instance` names this service in the call records (default: the hostname); it says it is
    alive there every few seconds, and finishes the open calls of a host sharing the database that
    has been silent for `host_timeout_s` (died and never came back). `ari` may name
    several Asterisk servers (one controller each; a call is offered by StasisBroadcast to every
    agent host connected to its Asterisk, see `claim_delay`)."""
    metrics = CallMetrics()
    live = LiveCalls(lambda: datetime.now(UTC))
    records = CallStore(db_url, spool=db_spool, host=instance or None)
    store: AsyncCallStore = MeteredStore(records, metrics, live)
    metrics.watch_spool(lambda: store.spool_pending)
    try:
        left_open = await store.close_open_calls()  # calls a crash or a kill left unfinished (after the spool's replay)
    except Exception as exc:  # the database is down: take calls anyway, their records go to the spool
        log.error("call log unreachable at start (%s): calls are taken and their records spooled to %s", exc, db_spool)
        left_open = []
    if left_open:
        log.warning("closed %d call(s) left open by the previous run as interrupted: %s", len(left_open), ", ".join(left_open))
    ari_configs = [] if ari is None else [ari] if isinstance(ari, AriConfig) else list(ari)
    clients = [AriClient(c) for c in ari_configs]
    controllers: list[AriController] = []
    if clients:
        default = (agents or {}).get(default_agent) or next(iter((agents or {}).values()), None) or default_agent_config()
        profiles = {name: a.profile for name, a in (agents or {}).items()}
        queue_context, queue_extension = overflow or ("", "")
        cfg = controller_config or ControllerConfig(audiosocket_address=advertise or f"{host}:{port}",
                                                    recording=default.profile.recording, transfer=default.profile.transfer,
                                                    fallback_context=queue_context, fallback_extension=queue_extension,
                                                    id_prefix=pool_id_prefix(ari_configs[0].app))
        controllers = [AriController(client, replace(cfg, agents={**cfg.agents, **profiles}), store=store) for client in clients]
    group = Controllers(controllers) if controllers else None
    controller = controllers[0] if controllers else None
    dialogs: dict[str, Any] = {}
    admission = Admission(max_calls)
    if group is not None:
        claim_offers(group, max_calls)
    handler_for, close_handler = await build_handlers(agent, db_url, group, store, engine_config, agents, default_agent, metrics,
                                                      dialogs, admission, busy_message)

    def linked(inner: Handler) -> Handler:
        if group is None:
            return inner

        async def handler(session: CallSession) -> None:
            group.attach(str(session.call_id))  # the controller bridges the caller once linked
            await inner(session)

        return handler

    server = AudioSocketServer(linked(handler_for(default_agent)), host, port)
    extra = {a.name: AudioSocketServer(linked(handler_for(a.name)), host, a.audiosocket_port)
             for a in (agents or {}).values() if a.audiosocket_port is not None}
    web_runner, http_port = None, None
    if http is not None:
        site_app = metrics_app(metrics, lambda: _readiness([server, *extra.values()], controllers, admission, records.host))
        if console_token:
            actions = ConsoleActions(group, [server, *extra.values()], dialogs)
            site_app.add_subapp("/console/", console_app(store, live, console_token, actions=actions))
        web_runner = web.AppRunner(site_app, access_log=None)
        await web_runner.setup()
        site = web.TCPSite(web_runner, http[0], http[1])
        await site.start()
        http_port = int(web_runner.addresses[0][1])  # port 0: the one it got
        log.info("metrics on http://%s:%d/metrics%s", http[0], http_port,
                 f", console on http://{http[0]}:{http_port}/console/" if console_token else " (no console: no console_token)")
    await server.start()
    for s in extra.values():
        await s.start()
    try:
        # Order on the way out: ARI calls are torn down first (callers hear a hangup, not
        # silence), then the AudioSocket sessions end (they still use the engines), then
        # engines and store close.
        async with contextlib.AsyncExitStack() as stack:
            for c in controllers:
                await stack.enter_async_context(c.running(connect_timeout_s=30, must_connect=False, grace=shutdown_grace))
            stack.callback(lambda: log.info("shutting down: ending %d live call(s)", len(server.sessions)))
            if db_spool is not None:
                replaying = asyncio.create_task(_replay_spool(store))
                stack.push_async_callback(stop_task, replaying)
            watching = asyncio.create_task(_watch_hosts(store, host_timeout_s))
            stack.push_async_callback(stop_task, watching)
            yield Running(server, controller, store, extra, metrics, http_port, admission, controllers)
    finally:
        for s in extra.values():
            await s.close(grace=shutdown_grace)
        await server.close(grace=shutdown_grace)
        await close_handler()
        live.close()  # open live views end their streams, or the web runner would wait on them
        if web_runner is not None:
            await web_runner.cleanup()
        for client in clients:
            await client.aclose()
        await store.aclose()


class ConsoleActions:
    """The console's buttons: end a call (through ARI, else on its AudioSocket), or hand it to
    a person (the call's dialog does it, with its notice and summary)."""

    def __init__(self, controllers: Controllers | None, servers: list[AudioSocketServer], dialogs: dict[str, Any]) -> None:
        self.controllers, self.servers, self.dialogs = controllers, servers, dialogs

    async def end(self, call_id: str) -> bool:
        call = self.controllers.call(call_id) if self.controllers is not None else None
        if call is not None:
            await call.hangup()
            return True
        try:
            key = uuid.UUID(call_id)
        except ValueError:
            return False
        session = next((s.sessions[key] for s in self.servers if key in s.sessions), None)
        if session is not None:
            await session.hangup()
        return session is not None

    async def transfer(self, call_id: str) -> bool:
        dialog = self.dialogs.get(call_id)
        return bool(dialog is not None and dialog.ask_for_handover("a supervisor sent the call to a person from the console"))


async def _replay_spool(store: AsyncCallStore, every_s: float = SPOOL_REPLAY_S) -> None:
    """Put spooled call-log writes into the database once it is back, without waiting for the
    next call to write something."""
    while True:
        await asyncio.sleep(every_s)
        if store.spool_pending:
            try:
                await store.replay_spool()
            except Exception:
                log.exception("replaying the call-log spool failed")


async def _watch_hosts(store: AsyncCallStore, timeout_s: float, every_s: float = HEARTBEAT_S) -> None:
    """Tell the shared records this host is alive; finish the open calls of hosts that are not.
    The database being down only skips a beat (calls go on; their writes are spooled)."""
    while True:
        try:
            await store.heartbeat()
            closed = await store.close_calls_of_silent_hosts(timeout_s)
        except Exception as exc:
            log.debug("host heartbeat skipped: %s", exc)
        else:
            for host, ids in closed.items():
                log.warning("host %s silent for %g s: finished its %d open call(s) as interrupted: %s",
                            host, timeout_s, len(ids), ", ".join(ids))
        await asyncio.sleep(every_s)


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
