"""The ARI controller against the real Asterisk 22: inbound bridging, recording, DTMF, hangups
from either side, a WebSocket drop mid-call, the start-up sweep, an agent that is not there.
Every test ends by asserting through ARI that no channel or bridge is left.

The agent side is a small script per test (tones instead of speech, so the checks are exact);
the dialog through ARI with the real engines is tested in tests/dialog/test_dialog_ari.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from pathlib import Path

import pytest

from ari_app.backoff import Backoff
from ari_app.config import CallProfile, RecordingConfig, TransferConfig
from media.pcm import tone
from db import AsyncCallStore
from devtools import sipcall, testbed
from devtools.testbed import ari_request
from tests.ari.harness import (
    AgentCall,
    Stack,
    ari_stack,
    assert_nothing_left,
    call_in,
    client_for,
    ready_call,
    tones_per_second,
    wait_file,
    wait_until,
)

pytestmark = pytest.mark.asterisk


async def test_inbound_call_is_bridged_recorded_and_cleaned_up(asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    """Caller sends 440 Hz, the agent answers with 1000 Hz: the caller hears the agent, the
    bridge recording holds both parties, the store has its path and length."""
    async def agent(call: AgentCall) -> None:
        assert call.control is not None
        await call.control.ready.wait()
        fmt = await call.session.media_format()
        playout = await call.session.start_playout()
        await playout.play(tone(1000.0, 1500, fmt.sample_rate))

    rec = f"ari-{uuid.uuid4().hex[:10]}"
    store = AsyncCallStore(f"sqlite:///{tmp_path}/calls.db")
    async with ari_stack(asterisk_bed, agent, store=store) as stack:
        caller = await call_in(asterisk_bed, "record", {"TONE": "440", "REC_SECONDS": "4", "REC_NAME": rec})
        call = await ready_call(stack)
        assert call.control is not None and call.control.caller_id == caller
        assert call.session.call_id == uuid.UUID(call.control.call_id)
        # the caller is in our bridge with the agent's externalMedia leg
        bridge = await stack.client.request("GET", f"/bridges/{call.control.bridge_id}")
        assert set(bridge["channels"]) == {caller, call.control.media_id}
        await asyncio.wait_for(call.done.wait(), 15)  # the record extension hangs up after 4 s
        assert call.ended is not None and call.ended.reason.value == "caller_hangup"
        await wait_until(lambda: not stack.ctl.calls, 5, "tear-down")
        name = call.control.recording_name
        view = None
        for _ in range(200):  # RecordingFinished follows the hang-up; a loaded CI runner took over 5 s once
            view = await store.get_call(call.control.call_id)
            if view is not None and view.recording_path:
                break
            await asyncio.sleep(0.1)
    await store.aclose()
    heard = tones_per_second(await wait_file(asterisk_bed.host_path(f"{testbed.RECORDING_DIR}/{rec}.wav")))
    assert 1000 in heard, f"the caller never heard the agent: {heard}"
    assert view is not None and view.recording_path == f"{testbed.ARI_RECORDING_DIR}/{name}.wav"
    assert view.recording_s is not None and view.recording_s >= 2
    both = tones_per_second(asterisk_bed.host_path(view.recording_path))
    assert 1000 in both and 440 in both, f"the recording lacks a party: {both}"
    assert any(e.kind == "recording_finished" for e in view.events)


async def _short_recorded_call(bed: testbed.AsteriskBed, tmp_path: Path, *, drop_reports: bool) -> tuple[Any, list[str]]:
    """One call the agent ends after ~1.2 s (a recording of a whole second: Asterisk counts whole
    seconds); returns the stored call and the ARI event types the controller saw."""
    async def agent(call: AgentCall) -> None:
        assert call.control is not None
        await call.control.ready.wait()
        await asyncio.sleep(1.2)
        await call.session.hangup()

    store = AsyncCallStore(f"sqlite:///{tmp_path}/calls.db")
    try:
        async with ari_stack(bed, agent, store=store) as stack:
            seen: list[str] = []
            dispatch = stack.ctl.dispatch

            def spy(ev: Any) -> None:  # FAULT (with drop_reports): Asterisk's report never arrives
                seen.append(ev.type)
                if not (drop_reports and ev.type == "RecordingFinished"):
                    dispatch(ev)
            stack.ctl.dispatch = spy  # type: ignore[method-assign]
            await call_in(bed, "silence")
            call = await ready_call(stack)
            await asyncio.wait_for(call.done.wait(), 10)
            await wait_until(lambda: not stack.ctl.calls, 10, "tear-down")
            assert call.control is not None
            await wait_until(lambda: not stack.ctl._recordings, 10, "the recording's end")
        return await store.get_call(call.control.call_id), seen
    finally:
        await store.aclose()


async def test_tear_down_stops_the_recording_and_hears_its_end_before_the_bridge_goes(
        asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    """Asterisk reports a bridge recording through the bridge: one still finishing when the bridge
    is destroyed can go unreported (a CI run lost one). Tear-down stops the recording and waits
    for its report first, so the report always comes before BridgeDestroyed."""
    view, seen = await _short_recorded_call(asterisk_bed, tmp_path, drop_reports=False)
    assert "RecordingFinished" in seen and "BridgeDestroyed" in seen, seen
    assert seen.index("RecordingFinished") < seen.index("BridgeDestroyed"), seen
    assert view is not None and view.recording_path and view.recording_s is not None and view.recording_s >= 1
    finished = [e.detail for e in view.events if e.kind == "recording_finished"]
    assert finished and "reported" not in finished[0], view.events


async def test_a_recording_asterisk_never_reports_is_found_in_its_store(asterisk_bed: testbed.AsteriskBed,
                                                                       tmp_path: Path) -> None:
    """With Asterisk's report lost (a fault injected), the controller asks Asterisk for the stored
    file after tear-down and keeps it on the call record, its length measured on our clock."""
    view, seen = await _short_recorded_call(asterisk_bed, tmp_path, drop_reports=True)
    assert "RecordingFinished" in seen, seen
    assert view is not None and view.recording_path, view and view.events
    assert asterisk_bed.host_path(view.recording_path).stat().st_size > 1000
    assert view.recording_s is not None and 1.0 <= view.recording_s < 10.0, view.recording_s
    finished = [e.detail for e in view.events if e.kind == "recording_finished"]
    assert finished and finished[0]["reported"] is False, view.events


async def test_agent_hangup_hangs_up_the_caller(asterisk_bed: testbed.AsteriskBed) -> None:
    async def agent(call: AgentCall) -> None:
        assert call.control is not None
        await call.control.ready.wait()
        await asyncio.sleep(0.5)
        await call.session.hangup()

    async with ari_stack(asterisk_bed, agent, recording=_no_recording()) as stack:
        caller = await call_in(asterisk_bed, "silence")
        call = await ready_call(stack)
        await asyncio.wait_for(call.done.wait(), 10)
        await wait_until(lambda: not stack.ctl.calls, 5, "tear-down")
        assert await stack.client.get_channel(caller) is None


async def test_dtmf_from_a_local_caller_reaches_the_agent(asterisk_bed: testbed.AsteriskBed) -> None:
    """Each key press arrives twice: as an ARI event and as an AudioSocket 0x03 frame through
    the bridge (the dialog de-duplicates them)."""
    async with ari_stack(asterisk_bed, recording=_no_recording()) as stack:
        caller = await call_in(asterisk_bed, "dtmf", {"DTMF": "4711#", "DTMF_DELAY": "0.5"})
        call = await ready_call(stack)
        assert call.control is not None
        await wait_until(lambda: len(call.digits) >= 5 and len(call.control.digits) >= 5, 10, "the digits")  # type: ignore[union-attr]
        assert call.control.drain_digits() == list("4711#")
        assert call.digits == list("4711#")
        await stack.client.hangup(caller)
        await asyncio.wait_for(call.done.wait(), 10)


async def test_dtmf_from_a_sip_caller(asterisk_bed: testbed.AsteriskBed) -> None:
    async with ari_stack(asterisk_bed, recording=_no_recording()) as stack:
        steps: list[sipcall.Step] = [sipcall.Pause(1500), sipcall.Digit("0"), sipcall.Pause(300), sipcall.Digit("7"), sipcall.Pause(800)]
        placed = asyncio.create_task(asyncio.to_thread(
            sipcall.place_call, asterisk_bed.sip_host, asterisk_bed.sip_port, "agent-ari", steps))
        call = await ready_call(stack)
        assert call.control is not None
        result = await placed
        assert result.ok, result.errors
        await asyncio.wait_for(call.done.wait(), 10)
        assert call.control.drain_digits() == ["0", "7"]
        assert call.digits == ["0", "7"]


async def test_websocket_drop_and_reconnect_mid_call(asterisk_bed: testbed.AsteriskBed) -> None:
    """Events after a reconnect still reach the call; a hangup during the gap (its events are
    lost) is found by the resync, and nothing is left behind."""
    gate = asyncio.Event()

    async def held_sleep(delay: float) -> None:  # keeps the reconnect back until the test says
        await gate.wait()

    client = client_for(asterisk_bed, backoff=Backoff(initial_s=0.05), sleep=held_sleep)
    async with ari_stack(asterisk_bed, client=client, recording=_no_recording()) as stack:
        caller = await call_in(asterisk_bed, "dtmf", {"DTMF": "5", "DTMF_DELAY": "3"})
        call = await ready_call(stack)
        assert call.control is not None
        await stack.client.drop_connection()
        await wait_until(lambda: not stack.ctl.connected.is_set(), 5, "the drop")
        gate.set()
        await asyncio.wait_for(stack.ctl.connected.wait(), 5)
        assert stack.ctl.reconnects == 1
        await wait_until(lambda: call.control.digits == ["5"], 10, "a digit after the reconnect")  # type: ignore[union-attr]
        # now a hangup while the events are down
        gate.clear()
        await stack.client.drop_connection()
        await wait_until(lambda: not stack.ctl.connected.is_set(), 5, "the second drop")
        await stack.client.hangup(caller)
        await asyncio.sleep(0.3)
        assert stack.ctl.calls, "the controller cannot have seen the hangup yet"
        gate.set()
        await wait_until(lambda: not stack.ctl.calls, 10, "the resync to tear the call down")
        assert stack.ctl.reconnects == 2
        await asyncio.wait_for(call.done.wait(), 10)


async def test_startup_sweep_removes_what_a_crashed_controller_left(asterisk_bed: testbed.AsteriskBed) -> None:
    async with ari_stack(asterisk_bed, recording=_no_recording(), check_clean=False) as stack:
        await call_in(asterisk_bed, "silence")
        await ready_call(stack)
        stack.run_task.cancel()  # "crash": no tear-down
        stack.ctl.calls.clear()
    left = await asyncio.to_thread(ari_request, asterisk_bed, "GET", "/channels")
    assert left, "the crash should have left the call up"
    async with ari_stack(asterisk_bed, recording=_no_recording()) as stack2:
        assert not stack2.ctl.calls
    await assert_nothing_left(asterisk_bed)


@pytest.mark.parametrize("lease_s", [0.0, 3.0], ids=["no-lease", "lease-3s"])
async def test_a_dead_controller_leaves_no_caller_behind_once_its_lease_runs_out(asterisk_bed: testbed.AsteriskBed,
                                                                                 lease_s: float) -> None:
    """The whole service dies (its ARI connection and its AudioSocket server at once, as kill -9
    does): without a lease the caller stays in Stasis in silence; with one, Asterisk itself
    hangs the caller up within lease_s, because nobody renews the deadline (lease.py)."""
    async with ari_stack(asterisk_bed, recording=_no_recording(), check_clean=False, lease_s=lease_s) as stack:
        caller = await call_in(asterisk_bed, "silence")
        call = await ready_call(stack)
        assert call.control is not None and (call.control.lease is not None) == (lease_s > 0)
        if lease_s:
            await wait_until(lambda: call.control is not None and call.control.lease is not None
                             and call.control.lease.renewals >= 2, 5, "two renewals")
        stack.run_task.cancel()  # "kill -9": no tear-down, ...
        for live in stack.ctl.calls.values():  # ... no more renewals, ...
            if live.lease is not None:
                live.lease.stop()
        await stack.server.close()  # ... and the AudioSocket side gone with it
        stack.ctl.calls.clear()
        t_dead = time.monotonic()
        while time.monotonic() - t_dead < (lease_s or 5.0) + 3.0:
            if await asyncio.to_thread(_channel_exists, asterisk_bed, caller) is False:
                break
            await asyncio.sleep(0.2)
        gone_after = time.monotonic() - t_dead
    still_there = await asyncio.to_thread(_channel_exists, asterisk_bed, caller)
    if lease_s:
        assert not still_there and gone_after <= lease_s + 1.0, gone_after
    else:
        assert still_there  # what the lease is for
    async with ari_stack(asterisk_bed, recording=_no_recording()):  # the start-up sweep clears the rest
        pass
    await assert_nothing_left(asterisk_bed)


def _channel_exists(bed: testbed.AsteriskBed, channel_id: str) -> bool:
    return any(c["id"] == channel_id for c in ari_request(bed, "GET", "/channels") or [])


@pytest.mark.parametrize("fallback", [False, True])
async def test_agent_unreachable_falls_back(asterisk_bed: testbed.AsteriskBed, fallback: bool) -> None:
    """No AudioSocket server at the address: the caller is sent on in the dialplan (fallback)
    or hung up; never left in silence."""
    extra: dict[str, Any] = {"fallback_context": testbed.TEST_CONTEXT, "fallback_extension": "silence"} if fallback else {}
    async with ari_stack(asterisk_bed, audiosocket_address="127.0.0.1:9", connect_timeout_s=2.0,
                         recording=_no_recording(), **extra) as stack:
        caller = await call_in(asterisk_bed, "silence")
        await wait_until(lambda: not stack.ctl.calls and stack.ctl.reconnects == 0 and _was_seen(stack), 10, "the fallback")
        chan = await stack.client.get_channel(caller)
        if fallback:
            assert chan is not None and chan["dialplan"]["exten"] == "silence"
            await stack.client.hangup(caller)
        else:
            for _ in range(50):
                if await stack.client.get_channel(caller) is None:
                    break
                await asyncio.sleep(0.1)
            assert await stack.client.get_channel(caller) is None


def _was_seen(stack: Stack) -> bool:
    return stack.ctl.seen_calls > 0


def _no_recording() -> RecordingConfig:
    return RecordingConfig(enabled=False)


@pytest.mark.parametrize(("asked", "chosen"), [("sales", "sales"), ("nosuchagent", ""), ("", "")])
async def test_the_dialplan_picks_the_agent_and_an_unknown_name_gets_the_default(
        asterisk_bed: testbed.AsteriskBed, asked: str, chosen: str) -> None:
    """Set(PHONEAGENT_AGENT=...) before the [phoneagent] agent extension becomes the Stasis
    argument; the call gets that agent's profile (here: a transfer target only "sales" has). A
    name no agent has is logged and the default agent takes the call: never a dropped caller."""
    async def agent(call: AgentCall) -> None:
        assert call.control is not None
        await call.control.ready.wait()
        await asyncio.sleep(0.3)
        await call.session.hangup()

    sales = CallProfile(_no_recording(), TransferConfig(human_endpoint="Local/human-accept@phoneagent-test"))
    async with ari_stack(asterisk_bed, agent, recording=_no_recording(), agents={"sales": sales}) as stack:
        await call_in(asterisk_bed, "silence", {"PHONEAGENT_AGENT": asked} if asked else None)
        call = await ready_call(stack)
        assert call.control is not None
        assert call.control.agent == chosen
        assert call.control.transfer_available is (chosen == "sales")
        await asyncio.wait_for(call.done.wait(), 10)
        await wait_until(lambda: not stack.ctl.calls, 5, "tear-down")
