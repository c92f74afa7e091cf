"""AriClient against a local aiohttp server standing in for Asterisk's ARI (REST + /ari/events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ari_app.backoff import Backoff
from ari_app.client import AriClient, AriConfig, AriError, Connected, Disconnected, StreamItem, basic_auth
from ari_app.events import ChannelDtmfReceived, StasisEnd, StasisStart

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

USER, PASSWORD, APP = "phoneagent", "s3cret", "phoneagent"
AUTH = basic_auth(USER, PASSWORD)


@dataclass
class Seen:
    """What the fake ARI server received."""

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    auth: str | None
    body: Any


@dataclass
class FakeAri:
    url: str
    seen: list[Seen] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve(routes: list[tuple[str, str, Handler]]) -> AsyncIterator[FakeAri]:
    """A local ARI stand-in on 127.0.0.1 (a free port); every request is recorded in `seen`."""
    fake = FakeAri(url="")

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        text = await request.text() if request.can_read_body else ""
        fake.seen.append(Seen(request.method, request.path, request.raw_path, dict(request.query),
                              request.headers.get("Authorization"), json.loads(text) if text else None))
        return await handler(request)

    app = web.Application(middlewares=[record])
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()


def client_for(url: str, *, timeout_s: float = 2.0, sleep: Callable[[float], Awaitable[None]] | None = None,
               backoff: Backoff | None = None) -> AriClient:
    config = AriConfig(url=url, user=USER, password=PASSWORD, app=APP, request_timeout_s=timeout_s)
    if sleep is None:
        return AriClient(config, backoff=backoff)
    return AriClient(config, backoff=backoff, sleep=sleep)


def json_response(data: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(data, status=status)
    return handler


def status_response(status: int, text: str = "") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=text)
    return handler


def free_closed_port() -> int:
    """A port nothing listens on (bound, then closed): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


CHANNEL = {"id": "1718031234.5", "name": "PJSIP/alice-00000002", "state": "Up",
           "caller": {"name": "Alice", "number": "201"}, "connected": {"name": "", "number": ""},
           "accountcode": "", "dialplan": {"context": "phoneagent-in", "exten": "100", "priority": 3,
                                           "app_name": "Stasis", "app_data": "phoneagent"},
           "creationtime": "2024-06-10T14:53:54.123+0000", "language": "en"}
NOT_FOUND = {"message": "Channel not found"}


# --- REST ------------------------------------------------------------------------------------


async def test_request_returns_decoded_json_with_auth_and_params() -> None:
    async with serve([("GET", "/ari/channels", json_response([CHANNEL]))]) as ari:
        async with client_for(ari.url) as client:
            got = await client.request("GET", "/channels", {"filter": "x y", "n": "2"})
    assert got == [CHANNEL]
    (seen,) = ari.seen
    assert (seen.method, seen.path, seen.query) == ("GET", "/ari/channels", {"filter": "x y", "n": "2"})
    assert seen.auth == AUTH


async def test_request_sends_json_body() -> None:
    async with serve([("POST", "/ari/channels", json_response(CHANNEL))]) as ari:
        async with client_for(ari.url) as client:
            got = await client.originate("PJSIP/200", "pa-h-1", "human,pa-1", timeout_s=20,
                                         caller_id="Phone agent", variables={"CALLERID(num)": "201"})
    assert got == CHANNEL
    (seen,) = ari.seen
    assert seen.query == {"endpoint": "PJSIP/200", "app": APP, "appArgs": "human,pa-1", "channelId": "pa-h-1",
                          "timeout": "20", "callerId": "Phone agent"}
    assert seen.body == {"variables": {"CALLERID(num)": "201"}}


async def test_empty_answer_is_none() -> None:
    async with serve([("POST", "/ari/channels/{id}/answer", status_response(204))]) as ari:
        async with client_for(ari.url) as client:
            assert await client.request("POST", "/channels/c1/answer") is None
            await client.answer("c1")
    assert [s.path for s in ari.seen] == ["/ari/channels/c1/answer"] * 2


async def test_ids_are_quoted_as_one_path_segment() -> None:
    async with serve([("GET", "/ari/channels/{id}", json_response(CHANNEL))]) as ari:
        async with client_for(ari.url) as client:
            assert await client.get_channel("Local/200@ctx-00000001;1") == CHANNEL
    (seen,) = ari.seen
    assert seen.path == "/ari/channels/Local/200@ctx-00000001;1"  # decoded
    assert seen.raw_path.startswith("/ari/channels/Local%2F200")  # one segment on the wire


async def test_404_raises_ari_error_with_message() -> None:
    async with serve([("GET", "/ari/channels/{id}", json_response(NOT_FOUND, 404))]) as ari:
        async with client_for(ari.url) as client:
            with pytest.raises(AriError) as info:
                await client.request("GET", "/channels/gone")
    err = info.value
    assert (err.status, err.method, err.path, err.message) == (404, "GET", "/channels/gone", "Channel not found")
    assert str(err) == "ARI GET /channels/gone: 404 Channel not found"


async def test_error_without_json_keeps_the_text() -> None:
    async with serve([("POST", "/ari/bridges/{id}", status_response(500, "Internal Server Error\n"))]) as ari:
        async with client_for(ari.url) as client:
            with pytest.raises(AriError) as info:
                await client.create_bridge("pa-b-1")
    assert (info.value.status, info.value.message) == (500, "Internal Server Error")


async def test_error_with_json_list_keeps_the_text() -> None:
    async with serve([("GET", "/ari/bridges", json_response(["x"], 400))]) as ari:
        async with client_for(ari.url) as client:
            with pytest.raises(AriError) as info:
                await client.list_bridges()
    assert (info.value.status, info.value.message) == (400, '["x"]')


async def test_get_channel_404_is_none() -> None:
    async with serve([("GET", "/ari/channels/{id}", json_response(NOT_FOUND, 404))]) as ari:
        async with client_for(ari.url) as client:
            assert await client.get_channel("gone") is None


@pytest.mark.parametrize("status, expected", [(204, True), (404, False), (422, False)])
async def test_hangup_and_destroy_bridge_tolerate_gone(status: int, expected: bool) -> None:
    routes: list[tuple[str, str, Handler]] = [
        ("DELETE", "/ari/channels/{id}", json_response(NOT_FOUND, status) if status >= 400 else status_response(status)),
        ("DELETE", "/ari/bridges/{id}", json_response({"message": "Bridge not found"}, status)
         if status >= 400 else status_response(status)),
    ]
    async with serve(routes) as ari:
        async with client_for(ari.url) as client:
            assert await client.hangup("c1", reason="busy") is expected
            assert await client.destroy_bridge("pa-b-1") is expected
    assert [(s.method, s.path, s.query) for s in ari.seen] == [
        ("DELETE", "/ari/channels/c1", {"reason": "busy"}), ("DELETE", "/ari/bridges/pa-b-1", {})]


async def test_hangup_other_errors_raise() -> None:
    async with serve([("DELETE", "/ari/channels/{id}", json_response({"message": "boom"}, 500))]) as ari:
        async with client_for(ari.url) as client:
            with pytest.raises(AriError, match="500 boom"):
                await client.hangup("c1")


async def test_slow_answer_times_out_with_status_0() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await release.wait()
        return web.json_response(CHANNEL)

    async with serve([("GET", "/ari/channels/{id}", slow)]) as ari:
        async with client_for(ari.url, timeout_s=0.15) as client:
            with pytest.raises(AriError) as info:
                await client.request("GET", "/channels/c1")
            assert info.value.status == 0
            assert "timed out after 0.15 s" in info.value.message
            assert "no answer" in str(info.value)
            # a per-call timeout overrides the configured one
            with pytest.raises(AriError, match="timed out after 0.05 s"):
                await client.request("GET", "/channels/c1", timeout_s=0.05)
        release.set()


async def test_refused_connection_is_status_0() -> None:
    async with client_for(f"http://127.0.0.1:{free_closed_port()}") as client:
        with pytest.raises(AriError) as info:
            await client.list_channels()
    assert info.value.status == 0 and info.value.message
    assert isinstance(info.value.__cause__, OSError)


async def test_closed_client_refuses_requests() -> None:
    client = client_for("http://127.0.0.1:1")
    await client.aclose()
    with pytest.raises(RuntimeError, match="ARI client is closed"):
        await client.list_channels()


# --- events ----------------------------------------------------------------------------------


def stasis_start() -> dict[str, Any]:
    return {"type": "StasisStart", "application": APP, "timestamp": "2024-06-10T14:53:55.001+0000",
            "args": ["inbound"], "channel": CHANNEL, "asterisk_id": "02:42:ac:11:00:02"}


def dtmf(digit: str) -> dict[str, Any]:
    return {"type": "ChannelDtmfReceived", "application": APP, "timestamp": "2024-06-10T14:53:56.001+0000",
            "digit": digit, "duration_ms": 100, "channel": CHANNEL, "asterisk_id": "02:42:ac:11:00:02"}


class FakeSleep:
    """Stands in for asyncio.sleep between reconnects: records the delay, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


Script = Callable[[web.WebSocketResponse, int], Awaitable[None]]


def ws_route(script: Script) -> tuple[str, str, Handler]:
    """/ari/events: connection n (1-based) runs script(ws, n)."""
    count = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal count
        count += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await script(ws, count)
        return ws
    return ("GET", "/ari/events", handler)


async def hold_open(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


async def take(stream: AsyncIterator[StreamItem], n: int, timeout_s: float = 2.0) -> list[StreamItem]:
    async with asyncio.timeout(timeout_s):
        return [await anext(stream) for _ in range(n)]


async def test_events_yield_typed_events_then_reconnect_after_backoff() -> None:
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        if n == 1:
            await ws.send_json(stasis_start())
            await ws.send_json(dtmf("5"))
            await ws.close()
        else:
            await hold_open(ws)

    sleep = FakeSleep()
    async with serve([ws_route(script)]) as ari:
        client = client_for(ari.url, sleep=sleep, backoff=Backoff(jitter=0.0))
        stream = client.events()
        try:
            items = await take(stream, 5)
        finally:
            await client.aclose()
            await stream.aclose()  # type: ignore[attr-defined]
    assert items[0] == Connected(reconnect=False)
    assert isinstance(items[1], StasisStart) and items[1].args == ("inbound",)
    assert isinstance(items[2], ChannelDtmfReceived) and items[2].digit == "5"
    assert isinstance(items[3], Disconnected) and "closed" in items[3].reason
    assert items[4] == Connected(reconnect=True)
    assert sleep.delays == [0.25]
    assert len(ari.seen) == 2
    for seen in ari.seen:
        assert seen.path == "/ari/events"
        assert seen.query == {"app": APP, "subscribeAll": "false"}
        assert seen.auth == AUTH


async def test_backoff_resets_after_each_successful_connection() -> None:
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        if n < 3:
            await ws.close()
        else:
            await hold_open(ws)

    sleep = FakeSleep()
    async with serve([ws_route(script)]) as ari:
        async with client_for(ari.url, sleep=sleep, backoff=Backoff(jitter=0.0)) as client:
            stream = client.events()
            items = await take(stream, 5)
            await stream.aclose()  # type: ignore[attr-defined]
    assert items == [Connected(False), Disconnected(items[1].reason),  # type: ignore[union-attr]
                     Connected(True), Disconnected(items[3].reason), Connected(True)]  # type: ignore[union-attr]
    assert sleep.delays == [0.25, 0.25]


async def test_failed_connects_back_off_exponentially() -> None:
    attempts = 0

    async def events(request: web.Request) -> web.StreamResponse:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await hold_open(ws)
        return ws

    sleep = FakeSleep()
    async with serve([("GET", "/ari/events", events)]) as ari:
        async with client_for(ari.url, sleep=sleep, backoff=Backoff(jitter=0.0)) as client:
            stream = client.events()
            items = await take(stream, 3)
            await stream.aclose()  # type: ignore[attr-defined]
    assert [type(i) for i in items] == [Disconnected, Disconnected, Connected]
    assert all("connect failed" in i.reason for i in items[:2])  # type: ignore[union-attr]
    assert items[2] == Connected(reconnect=False)  # first successful connection
    assert sleep.delays == [0.25, 0.5]


async def test_malformed_messages_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        await ws.send_str("not json {")
        await ws.send_json({"application": APP, "channel": CHANNEL})  # no type
        await ws.send_json(["StasisStart"])  # not an object
        await ws.send_json({"type": "StasisEnd", "application": APP})  # no channel
        await ws.send_bytes(b"\x00\x01")  # not text: ignored
        await ws.send_json(dtmf("7"))
        await hold_open(ws)

    async with serve([ws_route(script)]) as ari:
        async with client_for(ari.url, sleep=FakeSleep()) as client:
            stream = client.events()
            with caplog.at_level(logging.ERROR, logger="ari_app.client"):
                items = await take(stream, 2)
            await stream.aclose()  # type: ignore[attr-defined]
    assert items[0] == Connected(reconnect=False)
    assert isinstance(items[1], ChannelDtmfReceived) and items[1].digit == "7"
    errors = [r.getMessage() for r in caplog.records if r.name == "ari_app.client"]
    assert len(errors) == 4
    assert all(m.startswith("ARI: dropped a malformed event") for m in errors)
    assert "not json {" in errors[0]
    assert "has no 'type'" in errors[1]
    assert "must be a JSON object, got list" in errors[2]
    assert "ARI channel must be a JSON object" in errors[3]


async def test_null_numeric_field_does_not_end_the_stream() -> None:
    bad = dtmf("1")
    bad["duration_ms"] = None

    async def script(ws: web.WebSocketResponse, n: int) -> None:
        await ws.send_json(bad)
        await ws.send_json(dtmf("2"))
        await hold_open(ws)

    async with serve([ws_route(script)]) as ari:
        async with client_for(ari.url, sleep=FakeSleep()) as client:
            stream = client.events()
            try:
                items = await take(stream, 2)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
    assert isinstance(items[1], ChannelDtmfReceived) and items[1].digit == "2"


async def test_stream_stays_up_longer_than_the_request_timeout() -> None:
    """The session's total request timeout must not cut the long-lived event WebSocket."""
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        await asyncio.sleep(0.3)  # three request timeouts
        await ws.send_json(stasis_start())
        await hold_open(ws)

    async with serve([ws_route(script)]) as ari:
        async with client_for(ari.url, timeout_s=0.1, sleep=FakeSleep()) as client:
            stream = client.events()
            items = await take(stream, 2)
            await stream.aclose()  # type: ignore[attr-defined]
    assert items[0] == Connected(reconnect=False)
    assert isinstance(items[1], StasisStart)


async def test_aclose_ends_the_stream_without_disconnected() -> None:
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        await hold_open(ws)

    sleep = FakeSleep()
    async with serve([ws_route(script)]) as ari:
        client = client_for(ari.url, sleep=sleep)
        stream = client.events()
        assert await take(stream, 1) == [Connected(reconnect=False)]
        pending = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        await client.aclose()
        with pytest.raises(StopAsyncIteration):
            async with asyncio.timeout(2.0):
                await pending
    assert sleep.delays == []


async def test_drop_connection_reconnects() -> None:
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        await ws.send_json({"type": "StasisEnd", "application": APP, "channel": CHANNEL})
        await hold_open(ws)

    sleep = FakeSleep()
    async with serve([ws_route(script)]) as ari:
        async with client_for(ari.url, sleep=sleep, backoff=Backoff(jitter=0.0)) as client:
            stream = client.events()
            first = await take(stream, 2)
            await client.drop_connection()
            rest = await take(stream, 3)
            await stream.aclose()  # type: ignore[attr-defined]
    assert first[0] == Connected(False) and isinstance(first[1], StasisEnd)
    assert isinstance(rest[0], Disconnected) and rest[0].reason.startswith("closed")
    assert rest[1] == Connected(True) and isinstance(rest[2], StasisEnd)
    assert sleep.delays == [0.25]
