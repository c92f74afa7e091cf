"""The console's routes and their guard: a token from config (compared in constant time) opens
a session cookie (HttpOnly, SameSite=Strict); every form and action carries a CSRF token bound
to the session; every response forbids third-party content (Content-Security-Policy).

Mounted on the service's HTTP server (loopback by default) at /console; without a token in the
config the console is not served at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from db import AsyncCallStore
from phoneagent.console import pages
from phoneagent.console.live import LiveCalls
from phoneagent.records import as_json

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
COOKIE = "phoneagent_console"
SESSION_S = 12 * 3600
LIST_LIMIT = 200
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
Clock = Callable[[], datetime]


class CallActions(Protocol):
    """What the live view's buttons ask of the service (ARI or the dialog does the work)."""

    async def end(self, call_id: str) -> bool: ...
    async def transfer(self, call_id: str) -> bool: ...


class _Sessions:
    """Logged-in browsers (in memory: a restart logs everyone out) and their CSRF tokens."""

    def __init__(self, token: str, clock: Clock) -> None:
        self.token, self.clock = token, clock
        self.secret = secrets.token_bytes(32)
        self.until: dict[str, datetime] = {}

    def open(self, offered: str) -> str | None:
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            return None
        sid = secrets.token_urlsafe(32)
        self.until[sid] = self.clock() + timedelta(seconds=SESSION_S)
        return sid

    def valid(self, sid: str | None) -> bool:
        expires = self.until.get(sid or "")
        if expires is None:
            return False
        if expires < self.clock():
            self.until.pop(sid or "", None)
            return False
        return True

    def close(self, sid: str) -> None:
        self.until.pop(sid, None)

    def csrf(self, bound_to: str) -> str:
        """The CSRF token of a session (or, before login, of the login form's cookie)."""
        return hmac.new(self.secret, bound_to.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, bound_to: str, offered: str) -> bool:
        return bool(bound_to) and hmac.compare_digest(self.csrf(bound_to), offered)


def console_app(store: AsyncCallStore, live: LiveCalls, token: str, *, actions: CallActions | None = None,
                clock: Clock = lambda: datetime.now(UTC), recording_root: Path | None = None) -> web.Application:
    """`recording_root`: where Asterisk's file system is seen from here, when not at / (a
    chroot, a mount of the Asterisk host's spool): recordings are stored with Asterisk's paths."""
    if len(token) < 16:
        raise ValueError("the console token must be at least 16 characters (e.g. `openssl rand -hex 16`)")
    sessions = _Sessions(token, clock)
    app = web.Application(middlewares=[_headers, _guard(sessions)])

    def csrf_of(request: web.Request) -> str:
        return sessions.csrf(request.cookies.get(COOKIE, ""))

    def html(text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html")

    async def login_form(request: web.Request) -> web.Response:
        pre = request.cookies.get(COOKIE + "_login") or secrets.token_urlsafe(16)
        response = html(pages.login(sessions.csrf(pre)))
        response.set_cookie(COOKIE + "_login", pre, httponly=True, samesite="Strict", path=pages.BASE)
        return response

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        pre = request.cookies.get(COOKIE + "_login", "")
        if not sessions.csrf_ok(pre, str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="stale or forged login form: reload the page")
        sid = sessions.open(str(form.get("token", "")))
        if sid is None:
            log.warning("console: wrong token from %s", request.remote)
            return html(pages.login(sessions.csrf(pre), "Wrong token."), status=403)
        onward = web.HTTPSeeOther(f"{pages.BASE}/")
        onward.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path=pages.BASE, max_age=SESSION_S)
        onward.del_cookie(COOKIE + "_login", path=pages.BASE)
        raise onward

    async def logout(request: web.Request) -> web.Response:
        sessions.close(request.cookies.get(COOKIE, ""))
        onward = web.HTTPSeeOther(f"{pages.BASE}/login")
        onward.del_cookie(COOKIE, path=pages.BASE)
        raise onward

    async def call_list(request: web.Request) -> web.Response:
        q = request.query
        try:
            since = _day(q.get("since"), "since")
            before = _day(q.get("before"), "before")
            calls = await store.list_calls(LIST_LIMIT, since, before=before + timedelta(days=1) if before else None,
                                           agent=q.get("agent") or None,
                                           outcome="transferred" if q.get("transferred") else (q.get("outcome") or None),
                                           amd_result=q.get("amd") or None, text=q.get("text") or None)
        except ValueError as exc:
            return html(pages.call_list([], q, csrf_of(request), str(exc)), status=400)
        return html(pages.call_list(calls, q, csrf_of(request)))

    async def call_page(request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        as_data = call_id.endswith(".json")
        try:
            view = await store.get_call(call_id.removesuffix(".json"))
        except ValueError:
            view = None
        if view is None:
            raise web.HTTPNotFound(text="no such call")
        if as_data:
            return web.json_response(as_json(view), dumps=lambda d: json.dumps(d, ensure_ascii=False))
        return html(pages.call_page(view, csrf_of(request)))

    async def recording(request: web.Request) -> web.StreamResponse:
        try:
            view = await store.get_call(request.match_info["call_id"])
        except ValueError:
            view = None
        if view is None or not view.recording_path:
            raise web.HTTPNotFound(text="no recording for this call")
        path = Path(view.recording_path) if recording_root is None else recording_root / view.recording_path.lstrip("/")
        if not path.is_file():
            raise web.HTTPNotFound(text=f"the recording is not on this host ({view.recording_path})")
        return web.FileResponse(path, headers={"Cache-Control": "private, no-store"})

    async def overview(request: web.Request) -> web.Response:
        try:
            days = int(request.query.get("days", "7"))
            if not 1 <= days <= 366:
                raise ValueError
        except ValueError:
            raise web.HTTPBadRequest(text="days must be a whole number from 1 to 366") from None
        now = clock()
        return html(pages.overview(await store.overview(now - timedelta(days=days)), now, days, csrf_of(request)))

    async def live_page(request: web.Request) -> web.Response:
        return html(pages.live(csrf_of(request)))

    async def live_stream(request: web.Request) -> web.StreamResponse:
        """Server-sent events: a snapshot of the calls in progress, then each change."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        _secure(response.headers)
        await response.prepare(request)
        queue = live.subscribe()
        try:
            while (update := await queue.get()) is not None:
                await response.write(f"data: {json.dumps(update, ensure_ascii=False)}\n\n".encode())
        finally:
            live.unsubscribe(queue)
        return response

    async def act(request: web.Request) -> web.Response:
        if not sessions.csrf_ok(request.cookies.get(COOKIE, ""), request.headers.get("X-CSRF-Token", "")):
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
        call_id, what = request.match_info["call_id"], request.match_info["action"]
        if actions is None:
            raise web.HTTPConflict(text="call control is not available (the service runs without ARI)")
        if call_id not in live.calls:
            raise web.HTTPNotFound(text="no such call in progress")
        done = await (actions.end(call_id) if what == "end" else actions.transfer(call_id))
        log.info("console: %s call %s from %s: %s", what, call_id, request.remote, "done" if done else "refused")
        return web.json_response({"ok": done}, status=200 if done else 409)

    r = app.router
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/", call_list)
    r.add_get("/calls/{call_id}", call_page)
    r.add_get("/calls/{call_id}/recording", recording)
    r.add_get("/overview", overview)
    r.add_get("/live", live_page)
    r.add_get("/live/stream", live_stream)
    r.add_post("/live/{call_id}/{action:end|transfer}", act)
    r.add_static("/static", STATIC, append_version=False)
    return app


def _day(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a date like 2026-11-30") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN = ("/login", "/static/")


def _guard(sessions: _Sessions) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path.removeprefix(pages.BASE)
        if any(path.startswith(p) for p in OPEN):
            return await handler(request)
        if not sessions.valid(request.cookies.get(COOKIE)):
            if request.method == "GET" and not path.startswith("/live/stream") and not path.endswith((".json", "/recording")):
                raise web.HTTPSeeOther(f"{pages.BASE}/login")
            raise web.HTTPUnauthorized(text="log in first")
        if request.method == "POST" and path == "/logout":
            form = await request.post()
            if not sessions.csrf_ok(request.cookies.get(COOKIE, ""), str(form.get("csrf", ""))):
                raise web.HTTPForbidden(text="missing or wrong CSRF token")
        return await handler(request)

    return guard


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(exc.headers)
        raise
    if not response.prepared:  # a stream (the live view) sent its headers already: set before prepare
        _secure(response.headers)
    return response


def _secure(headers: Any) -> None:
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
