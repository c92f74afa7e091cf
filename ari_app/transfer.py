"""Blind and attended (warm) transfer, composed from ARI bridges (ARI has no single call for it).

Warm: the caller moves to a holding bridge with music on hold; the human leg is dialled and,
once it answers, joins the agent's bridge, so the agent's voice (the AudioSocket leg) speaks the
summary to the human only. The human presses 1 (accept) or 2 (decline); silence past the
timeout declines. Accept: the caller joins the human and the agent's leg is hung up (the agent
leaves). Anything else: the human leg is hung up and the caller returns to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ari_app.call import AriCall, Speak, TransferResult
from ari_app.client import AriError
from ari_app.events import ChannelDestroyed, Dial, StasisEnd, StasisStart
from media.clock import Clock, sleep, wait_any

if TYPE_CHECKING:
    from ari_app.controller import AriController

log = logging.getLogger(__name__)

# Why a human leg never answered: the Dial event's status, else the Q.850 hangup cause
_DIAL_STATUS = {"BUSY": "busy", "NOANSWER": "no_answer", "CHANUNAVAIL": "unavailable", "CONGESTION": "unavailable", "CANCEL": "no_answer"}
_CAUSES = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "declined"}


async def blind_transfer(ctl: AriController, call: AriCall) -> TransferResult:
    """The caller continues in the dialplan (a queue, an operator); our legs are torn down."""
    cfg = ctl.config.profile(call.agent).transfer
    try:
        await ctl.client.remove_from_bridge(call.bridge_id, call.caller_id)
        await ctl.release(call)
        await ctl.client.continue_in_dialplan(call.caller_id, cfg.blind_context, cfg.blind_extension)
    except AriError as exc:
        if call.ended.is_set():
            return TransferResult("caller_hangup")
        with contextlib.suppress(AriError):  # keep the caller with the agent
            await ctl.client.add_to_bridge(call.bridge_id, call.caller_id)
        ctl.hold(call)
        return TransferResult("failed", str(exc)[:200])
    call.transferred = "blind"
    ctl.spawn(ctl.teardown(call, "blind_transfer"))  # not awaited: it ends the agent's own leg
    return TransferResult("blind", f"{cfg.blind_context},{cfg.blind_extension}")


async def warm_transfer(ctl: AriController, call: AriCall, summary: str, speak: Speak) -> TransferResult:
    cfg = ctl.config.profile(call.agent).transfer
    client = ctl.client
    hold_id = f"{ctl.config.id_prefix}hold-{call.call_id}"
    human_id = f"{ctl.config.id_prefix}human-{call.call_id}"
    result = TransferResult("failed")
    try:
        call.bridges.add(hold_id)
        await client.create_bridge(hold_id, "holding")
        await client.remove_from_bridge(call.bridge_id, call.caller_id)
        await client.add_to_bridge(hold_id, call.caller_id)
        await client.bridge_moh(hold_id, moh_class=cfg.moh_class)
        result = await _offer(ctl, call, human_id, summary, speak)
    except AriError as exc:
        log.warning("call %s: warm transfer: %s", call.call_id, exc)
        result = TransferResult("failed", str(exc)[:200])
    finally:
        if call.ended.is_set() and result.outcome != "accepted":
            result = TransferResult("caller_hangup", result.detail)
        elif result.outcome != "accepted":
            await _back_to_agent(ctl, call, hold_id, human_id)
    return result


async def _offer(ctl: AriController, call: AriCall, human_id: str, summary: str, speak: Speak) -> TransferResult:
    """Dial the human, speak the summary, wait for 1/2. Leaves cleanup to the caller."""
    cfg = ctl.config.profile(call.agent).transfer
    client = ctl.client

    def human_gone(e: object) -> bool:
        return isinstance(e, (ChannelDestroyed, StasisEnd)) and e.channel.id == human_id

    answered = ctl.expect(lambda e: isinstance(e, StasisStart) and e.channel.id == human_id)
    gone = ctl.expect(human_gone)
    dial_failed = ctl.expect(lambda e: isinstance(e, Dial) and e.peer.id == human_id and e.dialstatus in _DIAL_STATUS)
    call.channels.add(human_id)
    call.human_id = human_id
    ctl.route(human_id, call)
    while not call.human_digits.empty():
        call.human_digits.get_nowait()
    caller_gone: asyncio.Future[Any] = asyncio.ensure_future(call.ended.wait())
    try:
        await client.originate(cfg.human_endpoint, human_id, f"human,{call.call_id}",
                               timeout_s=cfg.ring_timeout_s, caller_id=cfg.caller_id,
                               originator=call.caller_id, variables={"PHONEAGENT_CALL": call.call_id})
        ringing: set[asyncio.Future[Any]] = {answered, gone, caller_gone}
        done = await wait_any(ctl.clock, ringing, cfg.ring_timeout_s + 5)
        if caller_gone in done:
            return TransferResult("caller_hangup")
        if gone in done or not done:
            ev = gone.result() if gone in done else None
            cause = ev.cause if isinstance(ev, ChannelDestroyed) else 0
            if dial_failed.done():
                status = dial_failed.result()
                assert isinstance(status, Dial)
                return TransferResult(_DIAL_STATUS[status.dialstatus], f"dial {status.dialstatus}")
            return TransferResult(_CAUSES.get(cause, "no_answer"), f"cause {cause}")
        await client.add_to_bridge(call.bridge_id, human_id)
        speech: asyncio.Future[Any] = asyncio.ensure_future(speak(f"{cfg.intro} {summary} {cfg.prompt}"))
        key: asyncio.Future[Any] = asyncio.ensure_future(_accept_key(call))
        timer: asyncio.Future[Any] = asyncio.ensure_future(_after(ctl.clock, speech, cfg.accept_timeout_s))
        offered: set[asyncio.Future[Any]] = {key, gone, caller_gone, timer}
        try:
            done, _ = await asyncio.wait(offered, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (speech, key, timer):
                fut.cancel()
            await asyncio.gather(speech, key, timer, return_exceptions=True)
        if caller_gone in done:
            return TransferResult("caller_hangup")
        if gone in done:
            return TransferResult("human_hangup")
        if key in done and key.result() == "1":
            await _accept(ctl, call)
            return TransferResult("accepted")
        if key in done:
            return TransferResult("declined")
        return TransferResult("timeout")
    finally:
        for fut in (answered, gone, caller_gone, dial_failed):
            fut.cancel()


async def _accept_key(call: AriCall) -> str:
    while True:
        digit = await call.human_digits.get()
        if digit in ("1", "2"):
            return digit


async def _after(clock: Clock, speech: asyncio.Future[Any], seconds: float) -> None:
    """The accept timeout runs from the end of the summary (a failed speech counts as ended),
    on the controller's clock."""
    with contextlib.suppress(Exception):
        await speech
    await sleep(clock, seconds)


async def _accept(ctl: AriController, call: AriCall) -> None:
    """Caller joins the human in the agent's bridge; the agent's leg leaves."""
    client = ctl.client
    hold_id = f"{ctl.config.id_prefix}hold-{call.call_id}"
    call.transferred = "warm"
    await ctl.release(call)  # caller and person talk on even if the service goes away
    await client.bridge_moh(hold_id, on=False)
    await client.remove_from_bridge(hold_id, call.caller_id)
    await client.add_to_bridge(call.bridge_id, call.caller_id)
    await client.destroy_bridge(hold_id)
    call.bridges.discard(hold_id)
    call.channels.discard(call.media_id)
    await client.hangup(call.media_id)  # last: it ends the agent's session (and its tasks)


async def _back_to_agent(ctl: AriController, call: AriCall, hold_id: str, human_id: str) -> None:
    client = ctl.client
    with contextlib.suppress(AriError):
        await client.hangup(human_id)
    call.channels.discard(human_id)
    call.human_id = ""
    ctl.unroute(human_id)
    if call.ended.is_set():
        return
    with contextlib.suppress(AriError):
        await client.bridge_moh(hold_id, on=False)
        await client.remove_from_bridge(hold_id, call.caller_id)
    try:
        await client.add_to_bridge(call.bridge_id, call.caller_id)
    except AriError as exc:
        log.error("call %s: could not return the caller to the agent: %s", call.call_id, exc)
    with contextlib.suppress(AriError):
        await client.destroy_bridge(hold_id)
    call.bridges.discard(hold_id)
