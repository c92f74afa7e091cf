"""Outbound calls: originate through a configured endpoint/trunk, paced and with a concurrency cap.

An answered call is bridged to the agent exactly like an inbound one (direction "outbound"); the
agent side decides human or machine (answering-machine detection) and speaks or leaves the
message. A call that never answers (busy, no answer, unreachable) is stored with its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from ari_app.call import AriCall
from ari_app.client import AriError
from media.clock import wait_any
from ari_app.controller import AriController
from ari_app.events import ChannelDestroyed, Dial, StasisEnd, StasisStart

log = logging.getLogger(__name__)

_NUMBER_RE = re.compile(r"^\+?[0-9A-Za-z*#_.-]{1,64}$")
_FAILED = {"BUSY": "busy", "NOANSWER": "no_answer", "CHANUNAVAIL": "unavailable", "CONGESTION": "unavailable"}


@dataclass(frozen=True)
class OutboundConfig:
    """`endpoint` is a template: PJSIP/{number}@my-trunk, Local/{number}@outbound, ..."""

    endpoint: str = "PJSIP/{number}@trunk"
    caller_id: str = ""
    max_concurrent: int = 4
    min_interval_s: float = 1.0  # between two originates: trunks and carriers limit call attempts per second
    ring_timeout_s: int = 30
    agent: str = ""  # the agent that talks to whoever answers (ControllerConfig.agents); "" = default

    def __post_init__(self) -> None:
        if "{number}" not in self.endpoint:
            raise ValueError(f"outbound endpoint template needs {{number}}, got {self.endpoint!r}")
        if self.max_concurrent < 1 or self.min_interval_s < 0 or self.ring_timeout_s < 1:
            raise ValueError("outbound: max_concurrent >= 1, min_interval_s >= 0, ring_timeout_s >= 1")


@dataclass(frozen=True)
class OutboundResult:
    """outcome: answered (then the call's own outcome, e.g. human/machine, is in the store),
    busy | no_answer | unavailable | failed."""

    call_id: str
    number: str
    outcome: str
    detail: str = ""


class Dialer:
    def __init__(self, ctl: AriController, config: OutboundConfig | None = None, *, agent: str = "default") -> None:
        self.ctl = ctl
        self.config = config or OutboundConfig()
        self.agent = agent
        self._slots = asyncio.Semaphore(self.config.max_concurrent)
        self._pace = asyncio.Lock()
        self._last_originate: float | None = None
        self.active = 0
        self.peak_active = 0  # high-water mark of concurrent calls (metrics, tests)
        self.originated: list[float] = []  # controller-clock times of each originate

    async def call(self, number: str, *, wait_end: bool = True) -> OutboundResult:
        """Place one call; with `wait_end` return when it is over (else once answered/failed).
        The concurrency slot is held until the call ends either way."""
        if not _NUMBER_RE.match(number):
            raise ValueError(f"not a dialable number: {number!r}")
        await self._slots.acquire()
        released = False
        try:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
            result, call = await self._place(number)
            if call is None or not wait_end:
                if call is not None:
                    asyncio.ensure_future(self._release_after(call))
                    released = True
                return result
            await call.ended.wait()
            return result
        finally:
            if not released:
                self.active -= 1
                self._slots.release()

    async def _release_after(self, call: AriCall) -> None:
        try:
            await call.ended.wait()
        finally:
            self.active -= 1
            self._slots.release()

    async def _wait_pace(self) -> None:
        async with self._pace:
            clock = self.ctl.clock
            if self._last_originate is not None:
                await clock.sleep_until(self._last_originate + self.config.min_interval_s)
            self._last_originate = clock.now()
            self.originated.append(self._last_originate)

    async def _place(self, number: str) -> tuple[OutboundResult, AriCall | None]:
        ctl, cfg = self.ctl, self.config
        call_id = str(uuid.uuid4())
        chan_id = f"{ctl.config.id_prefix}out-{call_id}"
        call = AriCall(call_id=call_id, caller_id=chan_id, direction="outbound", caller_number=number, callee=number,
                       controller=ctl, agent=cfg.agent)
        await self._wait_pace()
        call.started_at = ctl.clock.now()
        await self._store_start(call)
        answered = ctl.expect(lambda e: isinstance(e, StasisStart) and e.channel.id == chan_id)
        gone = ctl.expect(lambda e: isinstance(e, (ChannelDestroyed, StasisEnd)) and e.channel.id == chan_id)
        failed = ctl.expect(lambda e: isinstance(e, Dial) and e.peer.id == chan_id and e.dialstatus in _FAILED)
        call.channels.add(chan_id)
        try:
            await ctl.client.originate(cfg.endpoint.format(number=number), chan_id, f"outbound,{call_id}",
                                       timeout_s=cfg.ring_timeout_s, caller_id=cfg.caller_id,
                                       variables={"PHONEAGENT_CALL": call_id})
            done = await wait_any(ctl.clock, {answered, gone}, cfg.ring_timeout_s + 5)
            if answered not in done:
                status = failed.result() if failed.done() else None
                outcome = _FAILED[status.dialstatus] if isinstance(status, Dial) else "no_answer"
                with contextlib.suppress(AriError):
                    await ctl.client.hangup(chan_id)
                await self._store_end(call, outcome)
                return OutboundResult(call_id, number, outcome, status.dialstatus if isinstance(status, Dial) else ""), None
            ctl.register(call)
            await self._store_answered(call)
            await ctl.connect_agent(call)
            await ctl.client.add_to_bridge(call.bridge_id, chan_id)
            await ctl.start_recording(call)
            call.ready.set()
            return OutboundResult(call_id, number, "answered"), call
        except (AriError, TimeoutError) as exc:
            log.error("outbound %s: %r", number, exc)
            if call.call_id in ctl.calls:
                await ctl.teardown(call, "failed", hang_up_caller=True)
            else:
                with contextlib.suppress(AriError):
                    await ctl.client.hangup(chan_id)
                await self._store_end(call, "failed")
            return OutboundResult(call_id, number, "failed", str(exc)[:200]), None
        finally:
            for fut in (answered, gone, failed):
                fut.cancel()

    async def _store_start(self, call: AriCall) -> None:
        store = self.ctl.store
        if store is None:
            return
        try:
            await store.start_call(call.call_id, direction="outbound", caller=call.caller_number, agent=self.config.agent or self.agent,
                                   started_at=datetime.now(timezone.utc), callee=call.callee)
        except Exception:
            log.exception("outbound %s: storing the call failed", call.call_id)

    async def _store_answered(self, call: AriCall) -> None:
        if self.ctl.store is not None:
            try:
                await self.ctl.store.mark_answered(call.call_id, datetime.now(timezone.utc))
            except Exception:
                log.exception("outbound %s: storing the answer failed", call.call_id)

    async def _store_end(self, call: AriCall, outcome: str) -> None:
        store = self.ctl.store
        if store is None:
            return
        try:
            await store.finish_call(call.call_id, ended_at=datetime.now(timezone.utc), end_reason=outcome, outcome=outcome)
        except Exception:
            log.exception("outbound %s: storing the outcome failed", call.call_id)
