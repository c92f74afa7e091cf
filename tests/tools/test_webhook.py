"""phoneagent.tools.webhook against a real local HTTP server (aiohttp.web on 127.0.0.1).

Every request the server gets is recorded, so the refusals can show that nothing was sent.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from media.clock import ManualClock
from phoneagent.tools.webhook import ToolConfigError, ToolResult, ToolRunner, Webhook, expand_env, host_allowed, url_host

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "pattern": "^[0-9a-z /]+$"},
        "verbose": {"type": "boolean"},
        "limit": {"type": "integer"},
    },
    "required": ["order_id"],
}
ALLOWED = frozenset({"127.0.0.1"})
FAST = {"retry_backoff_s": 0.01}
SEEN = web.AppKey("seen", list)
FAIL_LEFT = web.AppKey("fail_left", list)
RELEASE = web.AppKey("release", asyncio.Event)


@dataclass
class Seen:
    method: str
    path: str  # raw (still percent-encoded)
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Server:
    base: str
    seen: list[Seen]
    app: web.Application
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def fail_times(self, n: int) -> None:
        self.app[FAIL_LEFT][0] = n


async def _record(request: web.Request) -> Seen:
    text = await request.text()
    body: Any = None
    if text:
        try:
            body = await request.json()
        except ValueError:
            body = text
    seen = Seen(request.method, request.raw_path.split("?", 1)[0], dict(request.query), body, dict(request.headers))
    request.app[SEEN].append(seen)
    return seen


async def echo(request: web.Request) -> web.Response:
    s = await _record(request)
    return web.json_response({"method": s.method, "path": s.path, "query": s.query, "body": s.body})


async def not_found(request: web.Request) -> web.Response:
    await _record(request)
    return web.json_response({"error": "no such order"}, status=404)


async def flaky(request: web.Request) -> web.Response:
    await _record(request)
    left = request.app[FAIL_LEFT]
    if left[0] > 0:
        left[0] -= 1
        return web.json_response({"error": "database down"}, status=500)
    return web.json_response({"status": "shipped"})


async def slow(request: web.Request) -> web.Response:
    await _record(request)
    release: asyncio.Event = request.app[RELEASE]
    try:
        await asyncio.wait_for(release.wait(), 5.0)
    except TimeoutError:
        pass
    return web.json_response({"late": True})


async def text_ok(request: web.Request) -> web.Response:
    await _record(request)
    return web.Response(text="<html>hello</html>", content_type="text/html")


async def bad_bytes(request: web.Request) -> web.Response:
    await _record(request)
    return web.Response(body=b'{"a": "\xff\xfe"}', content_type="application/json")


async def bad_request(request: web.Request) -> web.Response:
    await _record(request)
    return web.json_response({"error": "order_id malformed"}, status=400)


async def too_many(request: web.Request) -> web.Response:
    await _record(request)
    return web.json_response({"error": "slow down"}, status=429)


async def huge(request: web.Request) -> web.Response:
    """A 1 MB JSON answer, Content-Length set: refused before its body is read."""
    await _record(request)
    return web.json_response({"rows": ["x" * 1000] * 1000})


async def endless(request: web.Request) -> web.StreamResponse:
    """A chunked answer that never ends (no Content-Length): a runaway export endpoint."""
    await _record(request)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b'{"rows": [')
    while True:
        await resp.write(b'"' + b"x" * 65536 + b'",')


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    app = web.Application()
    seen: list[Seen] = []
    release = asyncio.Event()
    app[SEEN] = seen
    app[FAIL_LEFT] = [0]
    app[RELEASE] = release
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/orders/{order_id}", echo)
    app.router.add_get("/missing/{order_id}", not_found)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/slow", slow)
    app.router.add_get("/text", text_ok)
    app.router.add_get("/bytes", bad_bytes)
    app.router.add_get("/bad", bad_request)
    app.router.add_get("/busy", too_many)
    app.router.add_get("/huge", huge)
    app.router.add_get("/endless", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Server(f"http://{host}:{port}", seen, app, release)
    finally:
        release.set()
        await runner.cleanup()


def hook(name: str, url: str, **kw: Any) -> Webhook:
    return Webhook(name, url, kw.pop("parameters", ORDER_SCHEMA), **kw)


async def call_once(h: Webhook, args: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                    allowed: frozenset[str] = ALLOWED) -> ToolResult:
    runner = ToolRunner({h.name: h}, allowed, env={} if env is None else env)
    try:
        return await runner.call(h.name, args)
    finally:
        await runner.aclose()


# --- requests -------------------------------------------------------------------------------------


async def test_get_encodes_url_field_and_puts_the_rest_in_the_query(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/orders/{order_id}"), {"order_id": "a b/c", "limit": 3, "verbose": True})
    assert r.ok and r.status == 200 and r.attempts == 1 and r.kind == "" and not r.cached
    assert len(server.seen) == 1
    s = server.seen[0]
    assert (s.method, s.path, s.query, s.body) == ("GET", "/orders/a%20b%2Fc", {"limit": "3", "verbose": "True"}, None)
    assert s.headers["Accept"] == "application/json"
    assert r.data == {"method": "GET", "path": "/orders/a%20b%2Fc", "query": {"limit": "3", "verbose": "True"}, "body": None}


async def test_post_puts_the_rest_in_the_json_body(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/orders/{order_id}", method="POST"), {"order_id": "42", "limit": 7})
    assert r.ok
    assert [(s.method, s.path, s.query, s.body) for s in server.seen] == [("POST", "/orders/42", {}, {"limit": 7})]


@pytest.mark.parametrize("args, field_name", [
    ({"order_id": 42}, "order_id"),                      # wrong type
    ({"order_id": "42; DROP"}, "order_id"),              # pattern mismatch
    ({"order_id": "42", "limit": "many"}, "limit"),      # wrong type of an optional one
    ({"limit": 3}, "order_id"),                          # missing required
])
async def test_invalid_arguments_make_no_request(server: Server, args: dict[str, Any], field_name: str) -> None:
    r = await call_once(hook("t", server.base + "/orders/{order_id}"), args)
    assert (r.ok, r.kind, r.status, r.attempts) == (False, "invalid", None, 0)
    assert field_name in r.error
    assert server.seen == []


async def test_unknown_tool_is_invalid(server: Server) -> None:
    runner = ToolRunner({}, ALLOWED, env={})
    try:
        r = await runner.call("nope", {})
    finally:
        await runner.aclose()
    assert (r.ok, r.kind) == (False, "invalid") and "nope" in r.error
    assert server.seen == []


# --- hosts ----------------------------------------------------------------------------------------


async def test_host_not_allowed_is_refused_at_construction(server: Server) -> None:
    h = hook("t", "http://evil.example.com:8080/orders/{order_id}")
    with pytest.raises(ToolConfigError, match="evil.example.com:8080"):
        ToolRunner({"t": h}, ALLOWED, env={})
    assert server.seen == []


async def test_host_allowed_by_name_matches_any_port_and_exact_port(server: Server) -> None:
    port = server.base.rsplit(":", 1)[1]
    h = hook("t", server.base + "/echo", parameters={"type": "object", "properties": {}})
    assert (await call_once(h, {}, allowed=frozenset({"127.0.0.1"}))).ok
    assert (await call_once(h, {}, allowed=frozenset({f"127.0.0.1:{port}"}))).ok
    with pytest.raises(ToolConfigError, match=f"127.0.0.1:{port}"):
        ToolRunner({"t": h}, frozenset({"127.0.0.1:1"}), env={})
    assert len(server.seen) == 2


def test_url_host_and_host_allowed() -> None:
    assert url_host("http://API.Example.com:8443/x?y=1") == "api.example.com:8443"
    assert url_host("https://example.com/x") == "example.com"
    assert host_allowed("http://example.com:81/", frozenset({"example.com"}))
    assert not host_allowed("http://example.com:81/", frozenset({"example.com:80"}))
    assert not host_allowed("http://notexample.com/", frozenset({"example.com"}))
    with pytest.raises(ToolConfigError):
        url_host("ftp://example.com/x")


# --- secrets --------------------------------------------------------------------------------------


async def test_header_secret_is_read_from_env(server: Server) -> None:
    h = hook("t", server.base + "/echo", headers={"Authorization": "Bearer ${API_TOKEN}"})
    r = await call_once(h, {"order_id": "1"}, env={"API_TOKEN": "s3cret"})
    assert r.ok
    assert [s.headers.get("Authorization") for s in server.seen] == ["Bearer s3cret"]


async def test_missing_header_secret_is_refused_without_a_request(server: Server) -> None:
    h = hook("t", server.base + "/echo", headers={"Authorization": "Bearer ${API_TOKEN}"})
    r = await call_once(h, {"order_id": "1"}, env={})
    assert (r.ok, r.kind, r.attempts) == (False, "refused", 0)
    assert "API_TOKEN" in r.error and "s3cret" not in r.error
    assert server.seen == []


# --- failures and retries -------------------------------------------------------------------------


async def test_500_twice_then_ok_with_two_retries(server: Server) -> None:
    server.fail_times(2)
    r = await call_once(hook("t", server.base + "/flaky", retries=2, **FAST), {"order_id": "1"})
    assert (r.ok, r.data, r.status, r.attempts) == (True, {"status": "shipped"}, 200, 3)
    assert len(server.seen) == 3


async def test_500_twice_with_one_retry_is_unavailable(server: Server) -> None:
    server.fail_times(2)
    r = await call_once(hook("t", server.base + "/flaky", retries=1, **FAST), {"order_id": "1"})
    assert (r.ok, r.kind, r.status, r.attempts) == (False, "unavailable", 500, 2)
    assert r.error == "HTTP 500: database down"
    assert len(server.seen) == 2


async def test_400_is_not_retried(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/bad", retries=3, **FAST), {"order_id": "1"})
    assert (r.ok, r.kind, r.status, r.attempts) == (False, "rejected", 400, 1)
    assert "order_id malformed" in r.error
    assert len(server.seen) == 1


async def test_404_is_not_found_and_not_retried(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/missing/{order_id}", retries=2, **FAST), {"order_id": "77"})
    assert (r.ok, r.kind, r.status, r.attempts) == (False, "not_found", 404, 1)
    assert "no such order" in r.error
    assert [s.path for s in server.seen] == ["/missing/77"]


async def test_429_is_retried(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/busy", retries=2, **FAST), {"order_id": "1"})
    assert (r.ok, r.kind, r.status, r.attempts) == (False, "unavailable", 429, 3)
    assert len(server.seen) == 3


async def test_slow_answer_times_out(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/slow", timeout_s=0.2), {"order_id": "1"})
    assert (r.ok, r.kind, r.status, r.attempts) == (False, "unavailable", None, 1)
    assert "timed out" in r.error
    assert 0.15 <= r.duration_s < 1.5
    assert len(server.seen) == 1


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = await call_once(hook("t", f"http://127.0.0.1:{port}/x", retries=1, **FAST), {"order_id": "1"})
    assert (r.ok, r.kind, r.status, r.attempts) == (False, "unavailable", None, 2)
    assert r.error


async def test_non_json_200_is_not_ok(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/text", retries=2, **FAST), {"order_id": "1"})
    assert (r.ok, r.status, r.attempts) == (False, 200, 1)
    assert "not JSON" in r.error
    assert len(server.seen) == 1


async def test_undecodable_body_is_a_result_not_an_exception(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/bytes"), {"order_id": "1"})
    assert (r.ok, r.status) == (False, 200)


@pytest.mark.parametrize("path", ["/huge", "/endless"])
async def test_an_answer_over_the_size_limit_is_an_error_and_not_retried(server: Server, path: str) -> None:
    h = hook("t", server.base + path, retries=2, timeout_s=5.0)
    runner = ToolRunner({h.name: h}, ALLOWED, env={}, max_answer_bytes=200_000)
    try:
        r = await runner.call(h.name, {"order_id": "1"})
    finally:
        await runner.aclose()
    assert (r.ok, r.kind, r.status, r.attempts) == (False, "unavailable", 200, 1)
    assert "200000-byte limit" in r.error, r.error
    assert len(server.seen) == 1


# --- cache ----------------------------------------------------------------------------------------


async def test_cache_hits_for_same_arguments_only(server: Server) -> None:
    h = hook("t", server.base + "/echo", cache_ttl_s=60)
    runner = ToolRunner({"t": h}, ALLOWED, env={})
    try:
        first = await runner.call("t", {"order_id": "1"})
        second = await runner.call("t", {"order_id": "1"})
        assert len(server.seen) == 1
        other = await runner.call("t", {"order_id": "2"})
    finally:
        await runner.aclose()
    assert (first.cached, first.attempts) == (False, 1)
    assert (second.ok, second.cached, second.attempts, second.duration_s) == (True, True, 0, 0.0)
    assert second.data == first.data
    assert (other.cached, other.data["query"]) == (False, {"order_id": "2"})
    assert len(server.seen) == 2


async def test_cache_expires_on_the_clock(server: Server) -> None:
    # ManualClock is safe here: no retry backoff or timeout expires, its wait_for only races the
    # real request against a virtual timer that never fires, and now() stamps the cache.
    clock = ManualClock()
    h = hook("t", server.base + "/echo", cache_ttl_s=60)
    runner = ToolRunner({"t": h}, ALLOWED, env={}, clock=clock)
    try:
        await runner.call("t", {"order_id": "1"})
        clock.advance(59.9)
        assert (await runner.call("t", {"order_id": "1"})).cached
        clock.advance(0.2)
        late = await runner.call("t", {"order_id": "1"})
    finally:
        await runner.aclose()
    assert (late.ok, late.cached) == (True, False)
    assert len(server.seen) == 2


async def test_no_cache_without_ttl(server: Server) -> None:
    h = hook("t", server.base + "/echo")
    runner = ToolRunner({"t": h}, ALLOWED, env={})
    try:
        a = await runner.call("t", {"order_id": "1"})
        b = await runner.call("t", {"order_id": "1"})
    finally:
        await runner.aclose()
    assert (a.cached, b.cached) == (False, False)
    assert len(server.seen) == 2


async def test_errors_are_not_cached(server: Server) -> None:
    h = hook("t", server.base + "/missing/{order_id}", cache_ttl_s=60)
    runner = ToolRunner({"t": h}, ALLOWED, env={})
    try:
        a = await runner.call("t", {"order_id": "1"})
        b = await runner.call("t", {"order_id": "1"})
    finally:
        await runner.aclose()
    assert (a.kind, b.kind, b.cached) == ("not_found", "not_found", False)
    assert len(server.seen) == 2


# --- record ---------------------------------------------------------------------------------------


def test_record_of_ok_and_error_results() -> None:
    ok = ToolResult(True, data={"status": "shipped"}, status=200, duration_s=0.01234, attempts=1)
    assert ok.record() == {"ok": True, "duration_ms": 12.3, "attempts": 1, "result": {"status": "shipped"}, "status": 200}
    err = ToolResult(False, error="HTTP 404: no such order", kind="not_found", status=404, duration_s=0.5, attempts=1)
    assert err.record() == {"ok": False, "duration_ms": 500.0, "attempts": 1, "error": "HTTP 404: no such order", "kind": "not_found",
                            "status": 404}
    refused = ToolResult(False, error="needs X", kind="refused")
    assert refused.record() == {"ok": False, "duration_ms": 0.0, "attempts": 0, "error": "needs X", "kind": "refused"}
    hit = ToolResult(True, data=[1], status=200, attempts=0, cached=True)
    assert hit.record() == {"ok": True, "duration_ms": 0.0, "attempts": 0, "result": [1], "status": 200, "cached": True}


async def test_record_of_a_real_call(server: Server) -> None:
    r = await call_once(hook("t", server.base + "/missing/{order_id}"), {"order_id": "9"})
    rec = r.record()
    assert set(rec) == {"ok", "duration_ms", "attempts", "error", "kind", "status"}
    assert (rec["ok"], rec["attempts"], rec["kind"], rec["status"], rec["error"]) == (False, 1, "not_found", 404,
                                                                                     "HTTP 404: no such order")
    assert 0 < rec["duration_ms"] < 1500


# --- expand_env -----------------------------------------------------------------------------------


def test_expand_env() -> None:
    assert expand_env("http://${A}/x", {"A": "h:1"}) == "http://h:1/x"
    assert expand_env("http://${A:-d.example}/x", {"A": "h"}) == "http://h/x"
    assert expand_env("http://${A:-d.example}/x", {}) == "http://d.example/x"
    assert expand_env("${A:-}z", {}) == "z"
    assert expand_env("no vars", {}) == "no vars"
    with pytest.raises(ToolConfigError, match="B"):
        expand_env("http://${A:-a}/${B}", {})


# --- Webhook.check --------------------------------------------------------------------------------


@pytest.mark.parametrize("h, words", [
    (Webhook("t", "http://127.0.0.1/x", {"type": "object", "properties": {"x": {"type": "nope"}}}), "not a valid JSON schema"),
    (Webhook("t", "http://127.0.0.1/x/{oid}", ORDER_SCHEMA), "{oid}"),
    (Webhook("t", "http://127.0.0.1/x", ORDER_SCHEMA, timeout_s=0), "timeout_s"),
    (Webhook("t", "http://127.0.0.1/x", ORDER_SCHEMA, timeout_s=31), "timeout_s"),
    (Webhook("t", "http://127.0.0.1/x", ORDER_SCHEMA, retries=9), "retries"),
    (Webhook("t", "http://127.0.0.1/x", ORDER_SCHEMA, retries=-1), "retries"),
    (Webhook("t", "http://127.0.0.1/x", ORDER_SCHEMA, cache_ttl_s=-1), "cache_ttl_s"),
    (Webhook("t", "ftp://127.0.0.1/x", ORDER_SCHEMA), "http://"),
    (Webhook("t", "http://other.example/x", ORDER_SCHEMA), "other.example"),
])
def test_check_refuses(h: Webhook, words: str) -> None:
    with pytest.raises(ToolConfigError) as info:
        h.check(ALLOWED)
    assert words in str(info.value)


def test_check_accepts_a_good_declaration() -> None:
    Webhook("t", "https://127.0.0.1/x/{order_id}", ORDER_SCHEMA, timeout_s=30, retries=5, cache_ttl_s=0).check(ALLOWED)
