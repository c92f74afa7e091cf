"""A dead man's switch on a caller's channel, kept by Asterisk itself.

A channel in Stasis stays there when the ARI application goes away: if the service is killed
(kill -9, the OOM killer, its host lost) the caller would sit in silence until someone hangs up.
So while the controller has the call it keeps a hang-up deadline on the caller's channel
(the TIMEOUT(absolute) dialplan function, checked by Asterisk's own channel code) and renews it
every third of `lease_s`. If the renewals stop, Asterisk hangs the caller up within `lease_s`.
The agent's own leg (the externalMedia channel) gets the same deadline: with the service's host
gone without a FIN it would otherwise sit in its bridge, its socket retransmitting for minutes.
The deadline is lifted when the call leaves us (sent on in the dialplan, or handed to a person
and no longer ours to end). Renewals are ARI requests, so they also stop when the network
between the service and Asterisk does: a partition frees the caller as a crash does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ari_app.client import AriClient, AriError
from media.clock import Clock, wait_for

log = logging.getLogger(__name__)

VARIABLE = "TIMEOUT(absolute)"


class Lease:
    def __init__(self, client: AriClient, channel_id: str, lease_s: float, clock: Clock) -> None:
        self.client = client
        self.channel_ids = [channel_id]  # the caller's first; add() appends the agent's leg
        self.lease_s = lease_s
        self.clock = clock
        self.renewals = 0
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # a renewal in flight never lands after the release

    async def keep(self) -> None:
        """Renew until `stop` or `release`; a failed renewal is retried at the next tick (the
        channel may be gone, or Asterisk briefly unreachable: the old deadline still holds)."""
        while not self._stop.is_set():
            async with self._lock:
                if self._stop.is_set():
                    return
                renewed = True
                for channel_id in list(self.channel_ids):
                    try:
                        await self.client.set_variable(channel_id, VARIABLE, f"{self.lease_s:g}")
                    except AriError as exc:
                        renewed = False
                        log.debug("lease on %s not renewed: %s", channel_id, exc)
                        if exc.status == 404:  # that leg is gone (hung up): nothing left to hold
                            self.channel_ids.remove(channel_id)
                if renewed:
                    self.renewals += 1
            with contextlib.suppress(TimeoutError):
                await wait_for(self.clock, self._stop.wait(), self.lease_s / 3)

    def add(self, channel_id: str) -> None:
        """Put the same deadline on another channel of the call, from the next renewal on."""
        if channel_id not in self.channel_ids:
            self.channel_ids.append(channel_id)

    def stop(self) -> None:
        """The call is over: stop renewing (its channel is gone or being hung up)."""
        self._stop.set()

    async def release(self) -> None:
        """The call goes on without us: stop renewing and lift the deadline."""
        self._stop.set()
        async with self._lock:
            for channel_id in self.channel_ids:
                with contextlib.suppress(AriError):
                    await self.client.set_variable(channel_id, VARIABLE, "0")
