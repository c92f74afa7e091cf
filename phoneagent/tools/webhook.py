"""Calling a business system mid-call: one declared HTTP JSON webhook per tool.

Everything that can be checked before a request is checked before it: the arguments against the
tool's JSON schema, the URL's host against the agent's allowed hosts, the secrets it names
against the environment. A request gets a timeout, bounded retries (connection errors, 5xx and
429 only: a 4xx will not change), a bound on the answer's size (a runaway endpoint must not fill the
service's memory) and an optional per-arguments cache. The result is a
`ToolResult` whatever happens: the dialog speaks an honest answer from it, never an invented one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import jsonschema

from media.clock import Clock, MonotonicClock, sleep, wait_for

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_FIELD_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?)\}")
_SECRET_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_ANSWER_BYTES = 256 * 1024  # far past any lookup a caller is read; a bigger answer is an error


class AnswerTooLarge(Exception):
    """The endpoint sent more than the runner reads (Content-Length or the body itself)."""


class ToolConfigError(ValueError):
    """A tool declaration that cannot work (found at start, before any call)."""


@dataclass(frozen=True)
class Webhook:
    """How one tool reaches its business system. `url` is a template: {field} takes an argument
    (percent-encoded); arguments not in the URL go in the query string (GET/DELETE) or the JSON
    body (others). Header values may name secrets as ${ENV_VAR}."""

    name: str
    url: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    method: Method = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 2.0
    retries: int = 0
    retry_backoff_s: float = 0.1
    cache_ttl_s: float = 0.0

    def check(self, allowed_hosts: frozenset[str]) -> None:
        """Refuse a declaration that could never be called: a bad schema, a URL field that is
        not an argument, a host outside `allowed_hosts`."""
        try:
            jsonschema.Draft202012Validator.check_schema(dict(self.parameters))
        except jsonschema.SchemaError as exc:
            raise ToolConfigError(f"tool {self.name!r}: parameters is not a valid JSON schema: {exc.message}") from None
        props = set((self.parameters.get("properties") or {}).keys())
        for name in _FIELD_RE.findall(self.url):
            if name not in props:
                raise ToolConfigError(f"tool {self.name!r}: url field {{{name}}} is not one of its parameters {sorted(props)}")
        filled = _FIELD_RE.sub("x", self.url)
        host = url_host(filled)
        if not host_allowed(filled, allowed_hosts):
            raise ToolConfigError(f"tool {self.name!r}: host {host!r} of {self.url!r} is not in allowed_hosts {sorted(allowed_hosts)}")
        if not (0 < self.timeout_s <= 30) or not (0 <= self.retries <= 5) or self.cache_ttl_s < 0:
            raise ToolConfigError(f"tool {self.name!r}: need 0 < timeout_s <= 30, 0 <= retries <= 5, cache_ttl_s >= 0")


@dataclass(frozen=True)
class ToolResult:
    """ok: the system answered 2xx with JSON. Otherwise `error` says what went wrong, in words
    for logs and the record (never for the caller), and `kind` what the dialog should do:
    "invalid" (arguments), "refused" (host or secret), "not_found" (404), "rejected" (other
    4xx), "unavailable" (timeout, connection, 5xx)."""

    ok: bool
    data: Any = None
    error: str = ""
    kind: str = ""
    status: int | None = None
    duration_s: float = 0.0
    attempts: int = 0
    cached: bool = False

    def record(self) -> dict[str, Any]:
        """What the call record keeps of it."""
        out: dict[str, Any] = {"ok": self.ok, "duration_ms": round(self.duration_s * 1000, 1), "attempts": self.attempts}
        if self.ok:
            out["result"] = self.data
        else:
            out.update(error=self.error, kind=self.kind)
        if self.status is not None:
            out["status"] = self.status
        if self.cached:
            out["cached"] = True
        return out


def url_host(url: str) -> str:
    """host[:port] as written in the URL (lower case); what allowed_hosts entries match."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolConfigError(f"tool url {url!r}: need http:// or https:// and a host")
    try:
        port = parts.port
    except ValueError:
        raise ToolConfigError(f"tool url {url!r}: the port is not a number from 1 to 65535") from None
    return parts.hostname.lower() + (f":{port}" if port else "")


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """${VAR} or ${VAR:-default} from the environment (a URL base that differs per site)."""
    def one(m: re.Match[str]) -> str:
        name, _, default = m.group(1).partition(":-")
        if name in env:
            return env[name]
        if m.group(1).find(":-") >= 0:
            return default
        raise ToolConfigError(f"{text!r} needs {name} in the environment")

    return _ENV_RE.sub(one, text)


def host_allowed(url: str, allowed: frozenset[str]) -> bool:
    """An entry matches host:port exactly, or the host alone (any port)."""
    host = url_host(url)
    return host in allowed or host.rsplit(":", 1)[0] in allowed


class ToolRunner:
    """Runs one agent's webhooks for every call (one aiohttp session, one cache)."""

    def __init__(self, hooks: Mapping[str, Webhook], allowed_hosts: frozenset[str], *, clock: Clock | None = None,
                 env: Mapping[str, str] | None = None, session: Callable[[], aiohttp.ClientSession] | None = None,
                 max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.hooks = dict(hooks)
        self.max_answer_bytes = max_answer_bytes
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.clock = clock or MonotonicClock()
        self.env = os.environ if env is None else env
        self._make_session = session or aiohttp.ClientSession
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[str, tuple[float, ToolResult]] = {}
        for hook in self.hooks.values():
            hook.check(self.allowed_hosts)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        hook = self.hooks.get(name)
        if hook is None:
            return ToolResult(False, error=f"no webhook named {name!r}", kind="invalid")
        try:
            jsonschema.validate(dict(arguments), dict(hook.parameters), cls=jsonschema.Draft202012Validator)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
            return ToolResult(False, error=f"invalid arguments for {name}: {where}: {exc.message}", kind="invalid")
        try:
            method, url, body, headers = self._request(hook, arguments)
        except ToolConfigError as exc:
            return ToolResult(False, error=str(exc), kind="refused")
        key = json.dumps([name, dict(arguments)], sort_keys=True, default=str)
        if hook.cache_ttl_s > 0:
            hit = self._cache.get(key)
            if hit is not None and self.clock.now() - hit[0] < hook.cache_ttl_s:
                return ToolResult(**{**hit[1].__dict__, "cached": True, "duration_s": 0.0, "attempts": 0})
        result = await self._send(hook, method, url, body, headers)
        if result.ok and hook.cache_ttl_s > 0:
            self._cache[key] = (self.clock.now(), result)
        return result

    def _request(self, hook: Webhook, arguments: Mapping[str, Any]) -> tuple[str, str, Any, dict[str, str]]:
        used = set(_FIELD_RE.findall(hook.url))
        url = _FIELD_RE.sub(lambda m: urllib.parse.quote(str(arguments.get(m.group(1), "")), safe=""), hook.url)
        rest = {k: v for k, v in arguments.items() if k not in used}
        body = None
        if hook.method in ("GET", "DELETE"):
            if rest:
                url += ("&" if "?" in url else "?") + urllib.parse.urlencode({k: str(v) for k, v in rest.items()})
        else:
            body = rest
        if not host_allowed(url, self.allowed_hosts):  # after filling in: an argument must not move the host
            raise ToolConfigError(f"host {url_host(url)!r} is not in allowed_hosts; no request made")
        headers = {"Accept": "application/json"}
        for k, v in hook.headers.items():
            missing = [s for s in _SECRET_RE.findall(v) if s not in self.env]
            if missing:
                raise ToolConfigError(f"tool {hook.name!r}: header {k} needs {', '.join(missing)} in the environment; no request made")
            headers[k] = _SECRET_RE.sub(lambda m: self.env[m.group(1)], v)
        return hook.method, url, body, headers

    async def _send(self, hook: Webhook, method: str, url: str, body: Any, headers: dict[str, str]) -> ToolResult:
        if self._session is None:
            self._session = self._make_session()
        t0 = time.perf_counter()
        last = ToolResult(False, error="not attempted", kind="unavailable")
        for attempt in range(1, hook.retries + 2):
            if attempt > 1:
                await sleep(self.clock, hook.retry_backoff_s * (attempt - 1))
            try:
                status, payload = await wait_for(self.clock, self._once(method, url, body, headers), hook.timeout_s)
            except (TimeoutError, asyncio.TimeoutError):
                last = ToolResult(False, error=f"timed out after {hook.timeout_s:g} s", kind="unavailable", attempts=attempt)
                continue
            except aiohttp.ClientError as exc:
                last = ToolResult(False, error=f"{type(exc).__name__}: {exc}"[:300], kind="unavailable", attempts=attempt)
                continue
            if isinstance(payload, AnswerTooLarge):  # not retried: it would only be as large again
                return ToolResult(False, error=str(payload), kind="unavailable", status=status,
                                  duration_s=time.perf_counter() - t0, attempts=attempt)
            if 200 <= status < 300:
                if isinstance(payload, Exception):
                    return ToolResult(False, error=f"answer is not JSON: {payload}"[:300], kind="unavailable", status=status,
                                      duration_s=time.perf_counter() - t0, attempts=attempt)
                return ToolResult(True, data=payload, status=status, duration_s=time.perf_counter() - t0, attempts=attempt)
            detail = payload.get("error") if isinstance(payload, dict) else None
            error = f"HTTP {status}" + (f": {detail}" if detail else "")
            kind = "not_found" if status == 404 else "unavailable" if status in _RETRY_STATUS else "rejected"
            last = ToolResult(False, error=error[:300], kind=kind, status=status, attempts=attempt)
            if status not in _RETRY_STATUS:
                break
        return ToolResult(**{**last.__dict__, "duration_s": time.perf_counter() - t0})

    async def _once(self, method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        assert self._session is not None
        limit = self.max_answer_bytes
        async with self._session.request(method, url, json=body, headers=headers, allow_redirects=False) as resp:
            if resp.content_length is not None and resp.content_length > limit:
                return resp.status, AnswerTooLarge(f"answer of {resp.content_length} bytes is over the {limit}-byte limit; not read")
            raw = bytearray()
            async for piece in resp.content.iter_chunked(64 * 1024):
                raw += piece
                if len(raw) > limit:  # no (or a false) Content-Length: stop reading at the limit
                    return resp.status, AnswerTooLarge(f"answer is over the {limit}-byte limit; the rest was not read")
            try:
                return resp.status, json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # a result either way, never an exception
                return resp.status, exc
