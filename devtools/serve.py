"""`phoneagent serve --ari` as its own process, as users run it, for tests and benchmarks that
need the whole service against the bundled Asterisk (faults, soak)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from devtools import testbed
from devtools.ports import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]


_HEALTH_IN_NETNS = """import json, sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=2).read().decode())
except Exception:
    print("null")
"""


@dataclass
class Service:
    proc: subprocess.Popen[bytes] | subprocess.Popen[str]
    http_port: int
    netns: tuple[str, ...] = ()  # an nsenter prefix: the service runs in that network namespace (its console is on loopback there)

    async def health(self) -> dict[str, Any] | None:
        """The service's /healthz (ok: listening and connected to ARI); None while it is not up."""
        if self.netns:
            done = await asyncio.to_thread(subprocess.run, [*self.netns, sys.executable, "-c", _HEALTH_IN_NETNS, str(self.http_port)],
                                           capture_output=True, text=True, timeout=30, check=False)
            try:
                found: dict[str, Any] | None = json.loads(done.stdout)
            except ValueError:
                return None
            return found
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    state: dict[str, Any] = await r.json()
                    return state
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def ready(self) -> bool:
        state = await self.health()
        return bool(state and state["ok"])

    async def wait_ready(self, timeout_s: float, what: str = "/healthz ok") -> None:
        """Until /healthz says it takes calls; RuntimeError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not await self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited ({self.proc.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
            await asyncio.sleep(0.2)


@asynccontextmanager
async def serving(bed: testbed.AsteriskBed, db: str, *, host: str = "127.0.0.1", agent: str = "dialog",
                  log: Path | None = None, extra: tuple[str, ...] = (),
                  ready_timeout_s: float = 180.0, env: dict[str, str] | None = None) -> AsyncIterator[Service]:
    """The service, yielded once /healthz says it takes calls (listening, connected to ARI; the
    engines load first); on exit SIGTERM, then SIGKILL after 30 s. Credentials come from the
    environment, as a deployment passes them; `env` adds to it (e.g. allocator settings)."""
    environ = {**os.environ, **(env or {}), "PHONEAGENT_ARI_USER": bed.ari_user, "PHONEAGENT_ARI_PASSWORD": bed.ari_password}
    out: IO[bytes] | int = log.open("ab") if log is not None else subprocess.DEVNULL
    http_port = free_tcp_port()
    proc = subprocess.Popen([sys.executable, "-m", "phoneagent.cli", "serve", "--agent", agent, "--ari", "--host", host,
                             "--port", str(free_tcp_port(host)), "--http-port", str(http_port), "--db", db, "--skip-preflight",
                             *extra], cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT)
    service = Service(proc, http_port)
    try:
        try:
            await service.wait_ready(ready_timeout_s, "it became ready")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}" + (f"; see {log}" if log else "")) from None
        yield service
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if not isinstance(out, int):
            out.close()
