"""The Stasis application: routes ARI events to calls, bridges callers to the agent, tears down.

Inbound: StasisStart -> ring -> mixing bridge -> externalMedia (AudioSocket, data = call UUID)
-> its StasisStart and the AudioSocket connection -> answer -> both in the bridge -> recording.
Every channel and bridge we create is on the call's lists; whichever leg ends first, tear-down
removes the rest, and a start-up sweep removes what a crashed predecessor left. Event handling
never blocks on REST: each call flow runs in its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any, Protocol

from ari_app.call import AriCall, Speak, TransferResult
from ari_app.client import AriClient, AriError, Connected, Disconnected
from ari_app.config import ControllerConfig
from ari_app.lease import Lease
from ari_app.events import (
    AriEvent,
    CallBroadcast,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    RecordingEvent,
    StasisEnd,
    StasisStart,
)
from media.clock import Clock, MonotonicClock, sleep as clock_sleep, wait_any, wait_for

log = logging.getLogger(__name__)

Predicate = Callable[[AriEvent], bool]
RECORDING_ENDS = ("RecordingFinished", "RecordingFailed")
RECORDING_REPORT_S = 3.0  # how long tear-down waits for a stopped recording's report, and once more after
EMPTY_RECORDING_S = 2.0  # a recording of "0 s" (Asterisk counts whole seconds) from a call this long is a failure


class ControllerStore(Protocol):
    """The db.AsyncCallStore methods the controller uses (structural: ari_app never imports db)."""

    async def add_event(self, call_id: str, t_ms: float, kind: str, detail: dict[str, Any] | None = None) -> None: ...
    async def set_recording(self, call_id: str, path: str, seconds: float) -> None: ...
    async def start_call(self, call_id: str, *, direction: str, caller: str | None, agent: str,
                         started_at: datetime, callee: str | None = None) -> None: ...
    async def mark_answered(self, call_id: str, at: datetime) -> None: ...
    async def finish_call(self, call_id: str, *, ended_at: datetime, end_reason: str,
                          outcome: str | None = None) -> None: ...


class AriController:
    def __init__(self, client: AriClient, config: ControllerConfig | None = None, *,
                 store: ControllerStore | None = None, clock: Clock | None = None) -> None:
        self.client = client
        self.config = config or ControllerConfig()
        self.store = store
        self.clock = clock or MonotonicClock()
        self.calls: dict[str, AriCall] = {}  # by call id (AudioSocket UUID)
        self._by_channel: dict[str, AriCall] = {}
        self._recordings: dict[str, AriCall] = {}  # live recording name -> call
        self._waiters: list[tuple[Predicate, asyncio.Future[AriEvent]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.seen_calls = 0
        self.on_outbound_answer: Callable[[AriCall], None] | None = None
        # Calls offered by StasisBroadcast() (several agent hosts, one Asterisk): seconds to wait
        # before claiming one, None to let the others have it (this host is full). The composition
        # root sets it from the load, so the least-loaded host tends to claim first. Unset: at once.
        self.claim_delay: Callable[[], float | None] | None = None
        self.claiming = asyncio.Lock()  # see _claim; one host's controllers share one (service.claim_offers)
        self.claimed: set[str] = set()  # channels this host won that have not started here yet

    # --- running ---
    async def run(self) -> None:
        """Sweep leftovers, then handle events until cancelled (reconnecting as needed)."""
        await self.sweep()
        async for item in self.client.events():
            if isinstance(item, Connected):
                self.connected.set()
                if item.reconnect:
                    self.reconnects += 1
                    self.spawn(self._resync())
            elif isinstance(item, Disconnected):
                self.connected.clear()
            else:
                self.dispatch(item)

    @contextlib.asynccontextmanager
    async def running(self, *, connect_timeout_s: float = 10.0, must_connect: bool = True,
                      grace: float = 3.0) -> AsyncIterator[asyncio.Task[None]]:
        """`run()` while inside, entered once ARI is connected (or after `connect_timeout_s`:
        an error if `must_connect`, else a warning while it keeps retrying); a run that dies
        at start-up raises its error. Yields the run's task. On exit: `close(grace)`, then the
        run is stopped."""
        task = asyncio.create_task(self.run())
        try:
            connected = asyncio.ensure_future(self.connected.wait())
            await wait_any(self.clock, {connected, task}, connect_timeout_s)
            if task.done():
                connected.cancel()
                task.result()  # the controller failed to start: say why
            if not connected.done():
                connected.cancel()
                if must_connect:
                    raise TimeoutError(f"not connected to ARI at {self.client.config.url} within {connect_timeout_s:g} s")
                log.warning("ARI not connected yet; the controller keeps retrying")
            yield task
        finally:
            await self.close(grace=grace)
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def close(self, grace: float = 3.0) -> None:
        """Tear down every live call (bounded), then cancel what is left."""
        calls = list(self.calls.values())
        if calls:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.clock, asyncio.gather(*(self.teardown(c, "shutdown", hang_up_caller=True) for c in calls),
                                                          return_exceptions=True), grace)
        if self._tasks:  # in-flight flows and store writes (a finished recording) get to finish
            await wait_any(self.clock, list(self._tasks), grace, return_when=asyncio.ALL_COMPLETED)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ARI call flow failed", exc_info=task.exception())

    # --- events ---
    def expect(self, predicate: Predicate) -> asyncio.Future[AriEvent]:
        """A future for the first event matching `predicate`: register BEFORE the request that causes it."""
        fut: asyncio.Future[AriEvent] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, fut))
        return fut

    def dispatch(self, ev: AriEvent) -> None:
        for entry in list(self._waiters):
            pred, fut = entry
            if fut.done():
                self._waiters.remove(entry)
            elif pred(ev):
                fut.set_result(ev)
                self._waiters.remove(entry)
        if isinstance(ev, StasisStart):
            self._on_stasis_start(ev)
        elif isinstance(ev, CallBroadcast):
            self._on_broadcast(ev)
        elif isinstance(ev, (StasisEnd, ChannelDestroyed)):
            self._on_channel_gone(ev.channel.id, ev)
        elif isinstance(ev, ChannelDtmfReceived):
            call = self._by_channel.get(ev.channel.id)
            if call is not None:
                if ev.channel.id == call.caller_id:
                    call.digits.append(ev.digit)
                elif ev.channel.id == call.human_id:
                    call.human_digits.put_nowait(ev.digit)
        elif isinstance(ev, RecordingEvent) and ev.type in RECORDING_ENDS:
            call = self._recordings.pop(ev.name, None)
            if call is not None:
                self.spawn(self._recording_done(call, ev))

    def _on_stasis_start(self, ev: StasisStart) -> None:
        chan = ev.channel
        if chan.id.startswith(self.config.id_prefix) or chan.id in self._by_channel:
            return  # our own externalMedia / human / outbound legs: their flows wait for this
        if ev.args and ev.args[0] != "inbound" or len(ev.args) > 2:
            log.warning("ARI: StasisStart with unknown args %s on %s; hanging up", ev.args, chan.name)
            self.spawn(self.client.hangup(chan.id))
            return
        agent = ev.args[1] if len(ev.args) == 2 else ""
        if agent and agent not in self.config.agents:  # a dialplan typo must not drop the caller
            log.warning("ARI: %s asked for agent %r, which is not configured (%s); the default agent takes the call",
                        chan.name, agent, ", ".join(sorted(self.config.agents)) or "none")
            agent = ""
        call = AriCall(call_id=str(uuid.uuid4()), caller_id=chan.id, caller_number=chan.caller_number, callee=chan.exten,
                       started_at=self.clock.now(), controller=self, agent=agent)
        self.register(call)
        self.spawn(self._inbound(call))

    def _on_broadcast(self, ev: CallBroadcast) -> None:
        self.spawn(self._claim(ev.channel))

    async def _claim(self, chan: Channel) -> None:
        """Offers are claimed one at a time, each delay judged after the previous claim's
        outcome: two calls offered at once to two idle hosts then split, where both used to
        wait 0 s on both hosts and the quicker host took both."""
        async with self.claiming:
            delay = 0.0 if self.claim_delay is None else self.claim_delay()
            if delay is None:
                log.info("ARI: %s offered; not claimed (this host is full)", chan.name)
                return
            if delay > 0:
                await clock_sleep(self.clock, delay)
            try:
                won = await self.client.claim(chan.id)
            except AriError as exc:
                log.warning("ARI: claiming %s failed: %s", chan.name, exc)
                won = False
            if won:
                self.claimed.add(chan.id)  # its StasisStart may come after the next offer
        log.info("ARI %s: %s %s after %.0f ms", self.client.config.url, chan.name, "claimed" if won else "taken by another host",
                 delay * 1000)

    def register(self, call: AriCall) -> None:
        self.claimed.discard(call.caller_id)
        self.seen_calls += 1
        self.calls[call.call_id] = call
        self._by_channel[call.caller_id] = call
        self.hold(call)

    def hold(self, call: AriCall) -> None:
        """Keep Asterisk's hang-up deadline on the caller (and later the agent's leg) while the
        call is ours (lease.py)."""
        if self.config.lease_s > 0 and not call.ended.is_set():
            call.lease = Lease(self.client, call.caller_id, self.config.lease_s, self.clock)
            self.spawn(call.lease.keep())

    async def release(self, call: AriCall) -> None:
        """The call goes on without us (a queue, a person): Asterisk must not end it when our
        lease stops being renewed."""
        if call.lease is not None:
            await call.lease.release()
            call.lease = None

    def _on_channel_gone(self, channel_id: str, ev: AriEvent) -> None:
        self.claimed.discard(channel_id)
        call = self._by_channel.get(channel_id)
        if call is None or call.ended.is_set():
            return
        if channel_id == call.caller_id:
            self.spawn(self.teardown(call, "caller_hangup"))
        elif channel_id == call.media_id and call.transferred != "warm":
            self.spawn(self.teardown(call, "agent_hangup", hang_up_caller=True))
        elif channel_id == call.human_id and call.transferred == "warm":
            self.spawn(self.teardown(call, "human_hangup", hang_up_caller=True))

    def route(self, channel_id: str, call: AriCall) -> None:
        """Send this channel's events (DTMF, hangup) to `call`."""
        self._by_channel[channel_id] = call

    def unroute(self, channel_id: str) -> None:
        self._by_channel.pop(channel_id, None)

    # --- the AudioSocket side ---
    def attach(self, call_id: str) -> AriCall | None:
        """The AudioSocket session for `call_id` arrived; None if it is not an ARI call."""
        call = self.calls.get(call_id)
        if call is not None:
            call.attached.set()
        return call

    # --- call flows ---
    async def _inbound(self, call: AriCall) -> None:
        try:
            if self.config.ring_while_connecting:
                await self.client.ring(call.caller_id)
            await self.connect_agent(call)
            await self.client.answer(call.caller_id)
            await self.client.add_to_bridge(call.bridge_id, call.caller_id)
            await self._event(call, "ari_answered")
            await self.start_recording(call)
            call.ready.set()
        except Exception as exc:
            if call.ended.is_set():
                return
            log.error("call %s: agent could not take the call: %r", call.call_id, exc)
            await self._event(call, "agent_unavailable", error=repr(exc)[:200])
            await self.send_on(call)

    async def connect_agent(self, call: AriCall) -> None:
        """Bridge + externalMedia in Stasis + AudioSocket connected; raises on timeout."""
        cfg = self.config
        call.bridge_id = f"{cfg.id_prefix}{call.call_id}"
        call.media_id = f"{cfg.id_prefix}em-{call.call_id}"
        self._by_channel[call.media_id] = call
        call.bridges.add(call.bridge_id)
        await self.client.create_bridge(call.bridge_id)
        started = self.expect(lambda e: isinstance(e, StasisStart) and e.channel.id == call.media_id)
        call.channels.add(call.media_id)
        try:
            await self.client.external_media(call.media_id, cfg.audiosocket_address, call.call_id,
                                             media_format=cfg.media_format)
            if call.lease is not None:  # the agent's leg is held by the same deadline (lease.py)
                call.lease.add(call.media_id)
            await wait_for(self.clock, asyncio.gather(started, call.attached.wait()), cfg.connect_timeout_s)
        finally:
            started.cancel()
        await self.client.add_to_bridge(call.bridge_id, call.media_id)

    async def send_on(self, call: AriCall, why: str = "agent_unavailable") -> None:
        """The agent cannot take the call (it is not there, or the box is full): send the
        caller on in the dialplan if a fallback is configured (a queue), else hang up."""
        cfg = self.config
        if cfg.fallback_context:
            await self.release(call)
            with contextlib.suppress(AriError):
                await self.client.continue_in_dialplan(call.caller_id, cfg.fallback_context, cfg.fallback_extension)
                call.transferred = "blind"
        await self.teardown(call, why, hang_up_caller=not call.transferred)

    async def teardown(self, call: AriCall, why: str, *, hang_up_caller: bool = False) -> None:
        """Remove everything we created for the call; idempotent, tolerant of what is gone."""
        if call.ended.is_set():
            return
        call.ended.set()
        call.ended_by = why
        call.ended_at = self.clock.now()
        if call.lease is not None:
            call.lease.stop()
        log.info("call %s: tear-down (%s)", call.call_id, why)
        targets = set(call.channels)
        if hang_up_caller:
            targets.add(call.caller_id)
        for channel_id in targets:
            try:
                await self.client.hangup(channel_id)
            except AriError as exc:
                log.warning("call %s: hangup %s: %s", call.call_id, channel_id, exc)
        await self._end_recording(call)  # the caller is gone already; the bridge must stay for this
        for bridge_id in call.bridges:
            try:
                await self.client.destroy_bridge(bridge_id)
            except AriError as exc:
                log.warning("call %s: destroy bridge %s: %s", call.call_id, bridge_id, exc)
        if self._recordings.get(call.recording_name) is call:
            self.spawn(self._recording_unreported(call, call.recording_name))
        self.calls.pop(call.call_id, None)
        for channel_id in targets | {call.caller_id, call.media_id, call.human_id}:
            if self._by_channel.get(channel_id) is call:
                del self._by_channel[channel_id]
        await self._event(call, "ari_teardown", why=why)

    async def sweep(self) -> dict[str, int]:
        """Start-up: hang up channels and destroy bridges a previous run left behind."""
        app, prefix = self.client.config.app, self.config.id_prefix
        channels = bridges = 0
        for chan in await self.client.list_channels():
            plan = chan.get("dialplan") or {}
            in_our_app = plan.get("app_name") == "Stasis" and str(plan.get("app_data", "")).split(",")[0] == app
            if str(chan.get("id", "")).startswith(prefix) or in_our_app:
                channels += await self.client.hangup(str(chan["id"]))
        for bridge in await self.client.list_bridges():
            if str(bridge.get("id", "")).startswith(prefix):
                bridges += await self.client.destroy_bridge(str(bridge["id"]))
        if channels or bridges:
            log.warning("ARI sweep: removed %d channel(s) and %d bridge(s) left by a previous run", channels, bridges)
        return {"channels": channels, "bridges": bridges}

    async def _resync(self) -> None:
        """After a reconnect: events during the gap are lost, so ask what is still there."""
        for call in list(self.calls.values()):
            try:
                if await self.client.get_channel(call.caller_id) is None:
                    await self.teardown(call, "caller_hangup (seen after reconnect)")
                elif call.media_id and call.transferred != "warm" and await self.client.get_channel(call.media_id) is None:
                    await self.teardown(call, "agent_hangup (seen after reconnect)", hang_up_caller=True)
            except AriError as exc:
                log.warning("call %s: resync: %s", call.call_id, exc)

    # --- recording ---
    async def start_recording(self, call: AriCall) -> None:
        rec = self.config.profile(call.agent).recording
        if not rec.enabled:
            return
        name = rec.file_name(call.call_id, datetime.now(timezone.utc).strftime("%Y-%m-%d"))
        self._recordings[name] = call
        call.recording_name = name
        call.recording_started_at = self.clock.now()
        try:
            await self.client.record_bridge(call.bridge_id, name, rec.media_format)
        except AriError as exc:  # a recording problem must not drop the call
            self._recordings.pop(name, None)
            call.recording_name = ""
            log.error("call %s: recording did not start: %s", call.call_id, exc)
            await self._event(call, "recording_failed", error=str(exc)[:200])

    async def _end_recording(self, call: AriCall) -> None:
        """Stop the call's recording and wait for Asterisk's word on it while the bridge still
        stands: Asterisk reports a bridge recording through the bridge, so a recording that
        finishes after its bridge is destroyed can go unreported (a loaded CI runner lost one)."""
        name = call.recording_name
        if not name or self._recordings.get(name) is not call:
            return
        reported = self.expect(lambda ev: isinstance(ev, RecordingEvent) and ev.name == name and ev.type in RECORDING_ENDS)
        try:
            await self.client.stop_recording(name)  # False: it has already ended
            await wait_for(self.clock, asyncio.shield(reported), RECORDING_REPORT_S)
        except (AriError, TimeoutError) as exc:
            log.warning("call %s: recording %s: no end reported yet (%r); the bridge goes anyway", call.call_id, name, exc)
        finally:
            reported.cancel()

    async def _recording_unreported(self, call: AriCall, name: str) -> None:
        """Tear-down is over and Asterisk has not reported the recording: give it a last moment,
        then ask for the stored file, so the call record keeps a recording Asterisk did write."""
        await clock_sleep(self.clock, RECORDING_REPORT_S)
        if self._recordings.get(name) is not call:
            return  # reported after all
        del self._recordings[name]
        path = self.config.profile(call.agent).recording.path(name)
        try:
            stored = await self.client.stored_recording(name)
        except AriError as exc:
            stored, why = None, f"Asterisk never reported its end and asking for the file failed: {exc}"
        else:
            why = "Asterisk never reported its end and stored no file"
        if stored is None:
            log.error("call %s: recording %s: %s", call.call_id, name, why)
            await self._event(call, "recording_failed", cause=why[:200])
            return
        seconds = round(max(0.0, call.ended_at - call.recording_started_at), 1)  # ours: Asterisk gave none
        log.warning("call %s: recording %s was never reported; Asterisk has the file (about %.1f s)", call.call_id, name, seconds)
        await self._event(call, "recording_finished", path=path, duration_s=seconds, reported=False)
        await self._store_recording(call, path, seconds)

    async def _recording_done(self, call: AriCall, ev: RecordingEvent) -> None:
        if ev.type == "RecordingFailed":
            await self._event(call, "recording_failed", cause=ev.cause)
            return
        path = self.config.profile(call.agent).recording.path(ev.name)
        seconds = float(ev.duration_s or 0.0)  # whole seconds: under one second reads 0
        if not call.ended.is_set():
            # We never stop a recording before the call ends (no max duration, no terminate key):
            # one that ends first hit a write error (a full disk reports "finished", not "failed").
            # The call goes on; the record says what happened.
            log.error("call %s: recording %s stopped after %.1f s while the call went on", call.call_id, ev.name, seconds)
            await self._event(call, "recording_failed", cause=f"stopped by Asterisk after {seconds:g} s (disk full or unwritable?)",
                              path=path, duration_s=seconds)
            if seconds <= 0.0:
                return
        elif seconds <= 0.0 and call.ended_at - call.recording_started_at >= EMPTY_RECORDING_S:
            lasted = call.ended_at - call.recording_started_at
            log.error("call %s: recording %s holds nothing after %.1f s of call", call.call_id, ev.name, lasted)
            await self._event(call, "recording_failed", path=path, duration_s=seconds,
                              cause=f"empty after {lasted:.1f} s of call (disk full or unwritable?)")
            return
        else:
            log.info("call %s: recording %s finished (%.1f s)", call.call_id, ev.name, seconds)
            await self._event(call, "recording_finished", path=path, duration_s=ev.duration_s)
        await self._store_recording(call, path, seconds)

    async def _store_recording(self, call: AriCall, path: str, seconds: float) -> None:
        if self.store is not None:
            try:
                await self.store.set_recording(call.call_id, path, seconds)
            except Exception:
                log.exception("call %s: storing the recording failed", call.call_id)

    # --- transfers (ari_app.transfer does the work) ---
    async def transfer(self, call: AriCall, summary: str, speak: Speak) -> TransferResult:
        from ari_app.transfer import blind_transfer, warm_transfer

        cfg = self.config.profile(call.agent).transfer
        if not cfg.available or call.ended.is_set():
            return TransferResult("unavailable", "no transfer target configured" if not cfg.available else "call ended")
        if cfg.mode == "blind":
            result = await blind_transfer(self, call)
        else:
            result = await warm_transfer(self, call, summary, speak)
        await self._event(call, "transfer", mode=cfg.mode, outcome=result.outcome, detail=result.detail)
        return result

    # --- records ---
    async def _event(self, call: AriCall, kind: str, **detail: Any) -> None:
        if self.store is None:
            return
        try:
            t_ms = round((self.clock.now() - call.started_at) * 1000, 1)
            await self.store.add_event(call.call_id, max(t_ms, 0.0), kind, detail or None)
        except Exception:  # a broken database never ends a live call
            log.exception("call %s: storing event %s failed", call.call_id, kind)
