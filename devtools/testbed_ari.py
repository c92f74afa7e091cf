"""ARI helpers for tests, benchmarks and scripts against the test bed: originate Local channels
into the test dialplan, hang up, list what is left. Synchronous (urllib via
`testbed.ari_request`, a timeout on every request); from async code call them through
asyncio.to_thread. The product's own ARI controller lives in ari_app/.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from ari_app.client import AriConfig
from devtools.testbed import AGENT_CONTEXT, TEST_CONTEXT, AriError, AsteriskBed, ari_request


def ari_config(bed: AsteriskBed) -> AriConfig:
    """What the product's ARI client needs to reach the test bed."""
    return AriConfig(url=bed.ari_url, user=bed.ari_user, password=bed.ari_password, app=bed.ari_app)


def ari_originate_local(bed: AsteriskBed, exten_uuid: str, context_exten: str,
                        variables: dict[str, str] | None = None, *,
                        context: str = TEST_CONTEXT, timeout_s: int = 30) -> str:
    """Originate Local/<exten_uuid>@phoneagent-agent; return the ;1 channel's id.

    The ;2 half dials the agent's AudioSocket with exten_uuid as its UUID; once that answers,
    the ;1 half runs <context_exten>@<context> (tone, record, silence, dtmf: extensions.conf).
    `variables` are set on ;1 (verified) and copied to ;2 by the Local channel, so
    PHONEAGENT_AUDIOSOCKET=host:port redirects this call's AudioSocket connection."""
    params = {"endpoint": f"Local/{exten_uuid}@{AGENT_CONTEXT}", "context": context,
              "extension": context_exten, "priority": "1", "timeout": str(timeout_s)}
    channel = ari_request(bed, "POST", "/channels", params, {"variables": variables or {}})
    return str(channel["id"])


def ari_hangup(bed: AsteriskBed, channel_id: str) -> bool:
    """Hang up a channel; False when it was already gone."""
    try:
        ari_request(bed, "DELETE", f"/channels/{urllib.parse.quote(channel_id)}")
    except AriError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def ari_channel_variable(bed: AsteriskBed, channel_id: str, name: str) -> str | None:
    try:
        answer = ari_request(bed, "GET", f"/channels/{urllib.parse.quote(channel_id)}/variable",
                             {"variable": name})
    except AriError as exc:
        if exc.status == 404:
            return None
        raise
    return str(answer["value"])


def ari_list_channels(bed: AsteriskBed) -> list[dict[str, Any]]:
    return list(ari_request(bed, "GET", "/channels"))


def ari_list_bridges(bed: AsteriskBed) -> list[dict[str, Any]]:
    return list(ari_request(bed, "GET", "/bridges"))


def ari_wait_no_channels(bed: AsteriskBed, timeout: float = 10,
                         match: str = "") -> list[dict[str, Any]]:
    """Poll until no channel (whose name contains `match`) is left; return what is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = [c for c in ari_list_channels(bed) if match in c.get("name", "")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
