"""The console over HTTP (aiohttp's test client, the real store on SQLite): the token guard,
CSRF, the call list and its filters, a call page, the recording, the overview, the live stream
and its buttons. The browser itself is tested in test_console_browser.py."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from db import AsyncCallStore
from phoneagent.console.app import console_app
from phoneagent.console.live import LiveCalls
from tests.console.seed import NOW, TOKEN, Seeded, seed


class ButtonsSeen:
    """Stands in for the service's call control (ARI hangup, the dialog's handover), which the
    browser and Asterisk tests exercise for real."""

    def __init__(self) -> None:
        self.pressed: list[tuple[str, str]] = []

    async def end(self, call_id: str) -> bool:
        self.pressed.append(("end", call_id))
        return True

    async def transfer(self, call_id: str) -> bool:
        self.pressed.append(("transfer", call_id))
        return False  # e.g. nobody to transfer to


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed(tmp_path)


@pytest.fixture
async def site(seeded: Seeded) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], LiveCalls, ButtonsSeen]]:
    store, live, buttons = AsyncCallStore(seeded.url), LiveCalls(lambda: NOW), ButtonsSeen()
    root = web.Application()
    root.add_subapp("/console/", console_app(store, live, TOKEN, actions=buttons, clock=lambda: NOW))
    async with TestClient(TestServer(root)) as client:
        yield client, live, buttons
    live.close()
    await store.aclose()


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" (?:value|content)="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


async def log_in(client: TestClient[web.Request, web.Application], token: str = TOKEN) -> int:
    form = await (await client.get("/console/login")).text()
    r = await client.post("/console/login", data={"token": token, "csrf": csrf_in(form)}, allow_redirects=False)
    return r.status


async def test_nothing_but_the_login_page_without_a_session(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = site
    r = await client.get("/console/", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/login"
    for path in ("/console/calls/00000000-0000-0000-0000-000000000001/recording", "/console/live/stream",
                 "/console/calls/00000000-0000-0000-0000-000000000001.json"):
        assert (await client.get(path, allow_redirects=False)).status == 401, path
    assert (await client.post("/console/live/x/end")).status == 401
    r = await client.get("/console/static/console.js")
    assert r.status == 200 and "EventSource" in await r.text()


async def test_a_wrong_token_is_refused_and_opens_no_session(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = site
    assert await log_in(client, "correct-horse-battery-stapler") == 403
    assert "phoneagent_console" not in {c.key for c in client.session.cookie_jar}
    assert (await client.get("/console/", allow_redirects=False)).status == 303
    r = await client.post("/console/login", data={"token": TOKEN}, allow_redirects=False)  # no CSRF token
    assert r.status == 403


async def test_log_in_list_filter_and_log_out(site, seeded: Seeded) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = site
    assert await log_in(client) == 303
    r = await client.get("/console/")
    page = await r.text()
    assert r.status == 200 and all(i in page for i in (seeded.transferred, seeded.plain, seeded.machine))
    assert "default-src 'none'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from another host
    only = await (await client.get("/console/", params={"transferred": "1"})).text()
    assert seeded.transferred in only and seeded.plain not in only and seeded.machine not in only
    amd = await (await client.get("/console/", params={"amd": "machine_message_left"})).text()
    assert seeded.machine in amd and seeded.transferred not in amd
    said = await (await client.get("/console/", params={"text": "saturday"})).text()
    assert seeded.plain in said and seeded.transferred not in said
    today = await (await client.get("/console/", params={"since": "2026-12-01", "agent": "support"})).text()
    assert seeded.transferred in today and seeded.plain not in today and seeded.machine not in today
    bad = await client.get("/console/", params={"since": "yesterday"})
    assert bad.status == 400 and "not a date like 2026-11-30" in await bad.text()
    r = await client.post("/console/logout", data={"csrf": "forged"}, allow_redirects=False)
    assert r.status == 403  # a forged logout form does nothing
    r = await client.post("/console/logout", data={"csrf": csrf_in(page)}, allow_redirects=False)
    assert r.status == 303 and (await client.get("/console/", allow_redirects=False)).status == 303


async def test_a_call_page_has_the_transcript_waterfall_recording_and_summary(site, seeded: Seeded) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = site
    await log_in(client)
    page = await (await client.get(f"/console/calls/{seeded.transferred}")).text()
    assert "Where is my order four four seven one?" in page and "cut off" in page
    assert "Would have said: Order 4471 left the depot this morning and arrives tomorrow." in page
    assert 'class="stage-llm"' in page and "V2V 1120 ms" in page  # 3520 - 2400
    assert "PJSIP/200" in page and "the caller asked for a person" in page and "wants a person" in page
    assert "order_status" in page and 'id="player"' in page and 'data-at="3.52"' in page
    audio = await client.get(f"/console/calls/{seeded.transferred}/recording")
    body = await audio.read()
    assert audio.status == 200 and body[:4] == b"RIFF" and len(body) == seeded.recording.stat().st_size
    data = await (await client.get(f"/console/calls/{seeded.transferred}.json")).json()
    assert data["transfer_target"] == "PJSIP/200" and data["turns"][2]["waterfall_ms"]["v2v"] == 1120.0
    assert (await client.get(f"/console/calls/{seeded.plain}/recording")).status == 404  # it has none
    assert (await client.get("/console/calls/not-a-uuid")).status == 404


async def test_the_overview_counts_outcomes_latency_and_why_calls_were_transferred(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = site
    await log_in(client)
    page = await (await client.get("/console/overview", params={"days": "7"})).text()
    assert "3 calls" in page
    assert "<td>transferred</td><td>1</td>" in page and "<td>completed</td><td>1</td>" in page
    assert "<td>2026-11-30</td><td>1</td><td>1100</td><td>1100</td>" in page  # the plain call's one agent turn
    assert "<td>the caller asked for a person</td><td>1</td>" in page
    assert page.count('class="bar"') == 2  # two of the calls fall in the last 24 hours, in different hours
    assert (await client.get("/console/overview", params={"days": "0"})).status == 400


async def test_the_live_stream_and_its_buttons(site) -> None:  # type: ignore[no-untyped-def]
    client, live, buttons = site
    await log_in(client)
    live.started("c1", direction="inbound", caller="+15550100", agent="support")
    stream = await client.get("/console/live/stream")
    assert stream.headers["Content-Type"] == "text/event-stream"

    async def next_update() -> dict[str, object]:
        line = await stream.content.readline()
        while not line.startswith(b"data: "):
            line = await stream.content.readline()
        return dict(json.loads(line[6:]))

    first = await next_update()
    assert first["type"] == "snapshot" and [c["call_id"] for c in first["calls"]] == ["c1"]  # type: ignore[union-attr, index]
    live.turn("c1", "caller", "Is my order late?")
    assert (await next_update())["turn"] == {"role": "caller", "text": "Is my order late?", "interrupted": False}
    page = await (await client.get("/console/live")).text()
    token = csrf_in(page)
    assert (await client.post("/console/live/c1/end")).status == 403  # no CSRF header
    assert (await client.post("/console/live/c1/end", headers={"X-CSRF-Token": token})).status == 200
    assert (await client.post("/console/live/c1/transfer", headers={"X-CSRF-Token": token})).status == 409
    assert (await client.post("/console/live/nope/end", headers={"X-CSRF-Token": token})).status == 404
    assert buttons.pressed == [("end", "c1"), ("transfer", "c1")]
    live.finished("c1", outcome="completed")
    assert (await next_update()) == {"type": "end", "call_id": "c1", "outcome": "completed"}
    stream.close()


async def test_a_short_token_is_refused() -> None:
    async with AsyncCallStore("sqlite:///:memory:") as store:
        with pytest.raises(ValueError, match="at least 16"):
            console_app(store, LiveCalls(lambda: NOW), "secret")


def test_the_waterfall_shows_work_done_before_the_endpoint_where_it_happened() -> None:
    """Speculation runs STT before the endpoint is decided: the bar is by time after the last
    word, so the transcript comes first and nothing has a negative length."""
    from datetime import UTC, datetime

    from db import TurnTimings, TurnView
    from phoneagent.console.pages import waterfall

    t = TurnTimings(speech_end_ms=1000.0, stt_done_ms=1249.0, endpoint_ms=1512.0, llm_first_token_ms=1533.0,
                    tts_first_audio_ms=1656.0, first_frame_ms=1673.0)
    bar = waterfall(TurnView(2, "agent", "Your bill is forty two pounds.", False, t, None, datetime(2026, 12, 1, tzinfo=UTC)))
    assert "stt +249 · endpoint +512 · llm +533 · tts +656 · wire +673" in bar and "V2V 673 ms" in bar
    assert bar.index('class="stage-stt"') < bar.index('class="stage-endpoint"') and 'width="-' not in bar
