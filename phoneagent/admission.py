"""Admission control: a full box turns a new call away clearly instead of making every call
slow. The caller hears a short "all our agents are busy" message, then goes on in the dialplan
(with ARI: the controller's fallback, e.g. a queue of people) or is hung up; the call is
recorded with the outcome "busy". Calls in progress keep their latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ari_app.call import CallControl
from audiosocket.server import CallEnded, CallSession
from media.pcm import resample

log = logging.getLogger(__name__)


class Live(Protocol):
    """A call as admission sees it (CallSession)."""

    @property
    def is_ended(self) -> bool: ...


BUSY_MESSAGE = "Sorry, all our agents are busy right now. Please try again in a few minutes. Goodbye."


class Admission:
    """Counts the calls being served; `enter()` refuses the one past `max_calls` (None: no
    limit). A call counts while its caller is on the line: once its session has ended it frees
    its place at once, even while its handler still writes the record and releases the engines
    (a caller who redials at once must not hear "busy" from a box serving fewer than max_calls).
    Single event loop, no lock needed."""

    def __init__(self, max_calls: int | None) -> None:
        if max_calls is not None and max_calls < 1:
            raise ValueError(f"max_calls must be >= 1 (or unset for no limit), got {max_calls}")
        self.max_calls = max_calls
        self._calls: list[Live] = []
        self.turned_away = 0

    @property
    def active(self) -> int:
        return sum(1 for c in self._calls if not c.is_ended)

    def enter(self, call: Live) -> bool:
        if self.max_calls is not None and self.active >= self.max_calls:
            self.turned_away += 1
            return False
        self._calls.append(call)
        return True

    def leave(self, call: Live) -> None:
        with contextlib.suppress(ValueError):
            self._calls.remove(call)


class BusyMessage:
    """The message synthesised once at start (the engines may be saturated when it is needed):
    `audio` as voice.synthesise_ahead makes it, at 16 and 8 kHz; another rate is resampled."""

    def __init__(self, text: str, audio: Mapping[tuple[str, int], bytes]) -> None:
        self.text = text
        self._pcm = {rate: pcm for (said, rate), pcm in audio.items() if said == text}

    def pcm(self, rate: int) -> bytes:
        if rate not in self._pcm:
            self._pcm[rate] = resample(self._pcm[16000], 16000, rate)
        return self._pcm[rate]


async def turn_away(session: CallSession, control: CallControl | None, store: Any, message: BusyMessage, *,
                    agent: str, why: str, wall_clock: Callable[[], Any] | None = None) -> None:
    """Say the busy message, then send the caller on (ARI) or hang up; record the call."""
    call_id = str(session.call_id)
    fmt = await session.media_format()
    await _write(store, "start_call", call_id, direction=control.direction if control else "inbound",
                 caller=(control.caller_number or None) if control else None, agent=agent,
                 callee=(control.callee or None) if control else None, media=f"slin{fmt.sample_rate // 1000}/{fmt.frame_ms:g}ms")
    await _write(store, "add_event", call_id, 0.0, "turned_away", {"why": why})
    playout = await session.start_playout()
    played = asyncio.ensure_future(playout.play(message.pcm(fmt.sample_rate)))
    end_reason = "agent_hangup"
    try:
        while not played.done():
            item_task = asyncio.ensure_future(session.receive())
            done, _ = await asyncio.wait({played, item_task}, return_when=asyncio.FIRST_COMPLETED)
            if item_task in done:
                if isinstance(item_task.result(), CallEnded):
                    end_reason = "caller_hangup"
                    break
            else:
                item_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await item_task
    finally:
        if not played.done():
            playout.clear()
            played.cancel()
    if end_reason != "caller_hangup":
        await _write(store, "add_turn", call_id, "agent", message.text)
        if control is not None:
            await control.send_on()  # the fallback in the dialplan (a queue), or a hangup
        else:
            await session.hangup()
    await _write(store, "finish_call", call_id, end_reason=end_reason, outcome="busy", disposition=why)


async def _write(store: Any, method: str, *args: Any, **kw: Any) -> None:
    if store is None:
        return
    try:
        await getattr(store, method)(*args, **kw)
    except Exception:  # a record problem must not keep a busy caller on the line
        log.exception("busy call %s: store.%s failed", args[0] if args else "?", method)
