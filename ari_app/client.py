"""A thin asyncio ARI client on aiohttp: REST calls with a timeout each, and the event WebSocket
with reconnect and back-off. README explains why this and not ari-py, aioari or asyncari.

REST answers are plain JSON (dicts); events are typed (ari_app.events). `events()` never ends on
a dropped connection: it yields `Disconnected`, waits a back-off delay, reconnects and yields
`Connected(reconnect=True)` so the controller can resynchronise (events during the gap are lost:
Asterisk does not replay them).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ari_app.backoff import Backoff
from ari_app.events import AriEvent, AriEventError, parse_event
from media.clock import Clock, MonotonicClock
from media.clock import sleep as clock_sleep

log = logging.getLogger(__name__)


class AriError(Exception):
    """An ARI request failed. `status` is the HTTP status; 0 means no answer (down, timeout)."""

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"ARI {method} {path}: {status or 'no answer'} {message}".rstrip())
        self.status = status
        self.method = method
        self.path = path
        self.message = message


@dataclass(frozen=True)
class AriConfig:
    url: str = "http://127.0.0.1:8088"
    user: str = "phoneagent"
    password: str = field(default="", repr=False)
    app: str = "phoneagent"
    request_timeout_s: float = 5.0
    heartbeat_s: float = 5.0  # WebSocket ping; a dead peer is noticed within ~2 heartbeats

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"ARI url must start with http:// or https://, got {self.url!r}")
        if not self.app or "," in self.app:
            raise ValueError(f"ARI app name must be non-empty without commas, got {self.app!r}")
        if not (math.isfinite(self.request_timeout_s) and math.isfinite(self.heartbeat_s)) or self.request_timeout_s <= 0 or self.heartbeat_s <= 0:
            raise ValueError("ARI timeouts must be > 0")


@dataclass(frozen=True)
class Connected:
    reconnect: bool


@dataclass(frozen=True)
class Disconnected:
    reason: str


StreamItem = AriEvent | Connected | Disconnected


def q(value: str) -> str:
    """Quote one path segment (channel and bridge ids may contain '.' or ';')."""
    return urllib.parse.quote(value, safe="")


def basic_auth(user: str, password: str) -> str:
    """The Authorization header value (aiohttp's BasicAuth helpers change across versions)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class AriClient:
    def __init__(self, config: AriConfig, *, backoff: Backoff | None = None, clock: Clock | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        """Reconnect delays run on `clock` (the real one by default); `sleep` replaces them
        outright (tests that hold or count the back-off)."""
        self.config = config
        self.backoff = backoff or Backoff()
        clock = clock or MonotonicClock()
        self._sleep: Callable[[float], Awaitable[None]] = sleep or (lambda seconds: clock_sleep(clock, seconds))
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closed = False

    async def __aenter__(self) -> AriClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("ARI client is closed")
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers={"Authorization": basic_auth(self.config.user, self.config.password)},
                timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s))
        return self._http

    async def aclose(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    # --- REST ---
    async def request(self, method: str, path: str, params: dict[str, str] | None = None,
                      body: dict[str, Any] | None = None, *, timeout_s: float | None = None) -> Any:
        """One REST call; the decoded JSON answer (None when empty). Raises AriError."""
        url = f"{self.config.url}/ari{path}"
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.config.request_timeout_s)
        try:
            async with self.http.request(method, url, params=params, json=body, timeout=timeout) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    try:
                        message = str(json.loads(text).get("message", text))
                    except (ValueError, AttributeError):
                        message = text
                    raise AriError(resp.status, method, path, message.strip())
                return json.loads(text) if text.strip() else None
        except TimeoutError as exc:
            raise AriError(0, method, path, f"timed out after {timeout.total} s") from exc
        except aiohttp.ClientError as exc:
            raise AriError(0, method, path, str(exc) or type(exc).__name__) from exc

    async def _gone_ok(self, method: str, path: str, params: dict[str, str] | None = None) -> bool:
        """A request on something that may already be gone: False on 404 (or 422: not in Stasis)."""
        try:
            await self.request(method, path, params)
        except AriError as exc:
            if exc.status in (404, 422):
                return False
            raise
        return True

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{q(channel_id)}/answer")

    async def ring(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{q(channel_id)}/ring")

    async def hangup(self, channel_id: str, reason: str = "normal") -> bool:
        """False when the channel was already gone."""
        return await self._gone_ok("DELETE", f"/channels/{q(channel_id)}", {"reason": reason})

    async def _get_or_none(self, path: str) -> dict[str, Any] | None:
        """GET one object; None on 404 (it does not exist)."""
        try:
            return dict(await self.request("GET", path))
        except AriError as exc:
            if exc.status == 404:
                return None
            raise

    async def get_channel(self, channel_id: str) -> dict[str, Any] | None:
        return await self._get_or_none(f"/channels/{q(channel_id)}")

    async def list_channels(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/channels"))

    async def list_bridges(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/bridges"))

    async def create_bridge(self, bridge_id: str, kind: str = "mixing", name: str = "") -> None:
        await self.request("POST", f"/bridges/{q(bridge_id)}", {"type": kind, "name": name or bridge_id})

    async def destroy_bridge(self, bridge_id: str) -> bool:
        return await self._gone_ok("DELETE", f"/bridges/{q(bridge_id)}")

    async def add_to_bridge(self, bridge_id: str, channel_id: str) -> None:
        await self.request("POST", f"/bridges/{q(bridge_id)}/addChannel", {"channel": channel_id})

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> bool:
        return await self._gone_ok("POST", f"/bridges/{q(bridge_id)}/removeChannel", {"channel": channel_id})

    async def bridge_moh(self, bridge_id: str, on: bool = True, moh_class: str = "default") -> None:
        if on:
            await self.request("POST", f"/bridges/{q(bridge_id)}/moh", {"mohClass": moh_class})
        else:
            await self._gone_ok("DELETE", f"/bridges/{q(bridge_id)}/moh")

    async def external_media(self, channel_id: str, external_host: str, data: str, *,
                             media_format: str = "slin16") -> dict[str, Any]:
        """An AudioSocket (TCP) externalMedia channel; `data` becomes the AudioSocket UUID."""
        return dict(await self.request("POST", "/channels/externalMedia", {
            "app": self.config.app, "channelId": channel_id, "external_host": external_host,
            "encapsulation": "audiosocket", "transport": "tcp", "format": media_format, "data": data}))

    async def originate(self, endpoint: str, channel_id: str, app_args: str, *, timeout_s: int = 30,
                        caller_id: str = "", originator: str = "",
                        variables: dict[str, str] | None = None) -> dict[str, Any]:
        """Dial `endpoint`; the channel enters our Stasis app (with `app_args`) when it answers."""
        params = {"endpoint": endpoint, "app": self.config.app, "appArgs": app_args,
                  "channelId": channel_id, "timeout": str(timeout_s)}
        if caller_id:
            params["callerId"] = caller_id
        if originator:
            params["originator"] = originator
        return dict(await self.request("POST", "/channels", params, {"variables": variables or {}}))

    async def record_bridge(self, bridge_id: str, name: str, media_format: str = "wav", *,
                            max_duration_s: int = 0, beep: bool = False) -> None:
        await self.request("POST", f"/bridges/{q(bridge_id)}/record", {
            "name": name, "format": media_format, "maxDurationSeconds": str(max_duration_s),
            "ifExists": "overwrite", "beep": "true" if beep else "false", "terminateOn": "none"})

    async def stop_recording(self, name: str) -> bool:
        """Stop and keep a live recording; False if it is no longer live."""
        return await self._gone_ok("POST", f"/recordings/live/{q(name)}/stop")

    async def stored_recording(self, name: str) -> dict[str, Any] | None:
        """The stored (finished) recording's name and format, or None if Asterisk has no such file."""
        return await self._get_or_none(f"/recordings/stored/{q(name)}")

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        """A channel variable or a dialplan function (e.g. TIMEOUT(absolute))."""
        await self.request("POST", f"/channels/{q(channel_id)}/variable", {"variable": variable, "value": value})

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str, priority: int = 1) -> None:
        await self.request("POST", f"/channels/{q(channel_id)}/continue",
                           {"context": context, "extension": extension, "priority": str(priority)})

    async def claim(self, channel_id: str) -> bool:
        """Claim a channel StasisBroadcast() offered (Asterisk >= 20.17/22.7): True if we got it,
        False if another app was first (409) or the offer is over (404: timed out, hung up)."""
        try:
            await self.request("POST", "/events/claim", {"channelId": channel_id, "application": self.config.app})
        except AriError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    # --- events ---
    async def events(self) -> AsyncIterator[StreamItem]:
        """Typed events forever (until aclose), reconnecting with back-off after a drop."""
        base = self.config.url.replace("http", "ws", 1)
        url = f"{base}/ari/events?" + urllib.parse.urlencode({"app": self.config.app, "subscribeAll": "false"})
        connected_before = False
        while not self._closed:
            reason = ""
            try:
                self._ws = await self.http.ws_connect(url, heartbeat=self.config.heartbeat_s,
                                                      timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                reason = f"connect failed: {exc or type(exc).__name__}"
            else:
                self.backoff.reset()
                yield Connected(reconnect=connected_before)
                connected_before = True
                try:
                    async for msg in self._ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        try:
                            yield parse_event(json.loads(msg.data))
                        except (ValueError, TypeError, AriEventError) as exc:  # one bad message never ends the stream
                            log.error("ARI: dropped a malformed event (%s): %.200s", exc, msg.data)
                    reason = f"closed ({self._ws.close_code})"
                except (aiohttp.ClientError, OSError) as exc:
                    reason = f"lost: {exc or type(exc).__name__}"
                finally:
                    await self._ws.close()
                    self._ws = None
            if self._closed:
                return
            delay = self.backoff.next_delay()
            log.warning("ARI events %s; reconnecting in %.2f s", reason, delay)
            yield Disconnected(reason)
            await self._sleep(delay)

    async def drop_connection(self) -> None:
        """Close the event WebSocket as a network fault would (tests; the stream reconnects)."""
        if self._ws is not None:
            await self._ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
