"""Warm and blind transfer against the real Asterisk 22.

The caller (Local/record) sends 440 Hz and records what it hears; the human leg is
Local/human-<action>@phoneagent-test, which records what IT hears and then accepts (1, then a
700 Hz tone), declines (2), stays silent, hangs up mid-summary, or is busy. The agent "speaks"
the summary as a 1000 Hz tone, so the checks are exact: the human hears the summary, the caller
hears hold music instead, and after an accept the caller hears the human. (The dialog speaking
a real summary with Piper is tested in tests/dialog/test_dialog_ari.py.)
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ari_app.call import TransferResult
from ari_app.config import RecordingConfig, TransferConfig
from media.pcm import tone
from devtools import testbed
from tests.ari.harness import AgentCall, ari_stack, call_in, ready_call, tones_per_second, wait_file

pytestmark = pytest.mark.asterisk

MOH = {440, 554, 659}  # the test bed's hold loop (phoneagent/testbed.py)


async def run_transfer(bed: testbed.AsteriskBed, action: str, *, caller_seconds: int = 14,
                       accept_timeout_s: float = 3.0, mode: str = "warm",
                       caller_leaves_on_hold: bool = False) -> tuple[TransferResult, AgentCall, str, str]:
    # The transfer is kept as a task of its own: when the caller hangs up, the agent's side is
    # cancelled, but the (shielded) transfer still finishes and its outcome must be read.
    transfers: list[asyncio.Future[TransferResult]] = []
    results: list[TransferResult] = []
    caller_ids: list[str] = []
    where: list[dict[str, object]] = []
    after: list[str] = []

    async def agent(call: AgentCall) -> None:
        assert call.control is not None
        await call.control.ready.wait()
        fmt = await call.session.media_format()
        playout = await call.session.start_playout()

        async def speak(text: str) -> None:
            assert "refund" in text and "Press 1" in text
            if caller_leaves_on_hold:  # the caller is on hold now: they give up
                await stack.client.hangup(caller_ids[0])
            await playout.play(tone(1000.0, 3000, fmt.sample_rate))

        transfers.append(asyncio.ensure_future(call.control.transfer("The caller wants a refund for order 12.", speak)))
        results.append(await asyncio.shield(transfers[-1]))
        if not results[-1].caller_left:  # back with the agent: it says something (1200 Hz)
            bridge = await call.control.controller.client.request("GET", f"/bridges/{call.control.bridge_id}")  # type: ignore[union-attr]
            after.extend(bridge["channels"])
            await playout.play(tone(1200.0, 1500, fmt.sample_rate))

    rec = f"xfer-{action}-{uuid.uuid4().hex[:8]}"
    transfer = TransferConfig(mode=mode, human_endpoint=f"Local/human-{action}@{testbed.TEST_CONTEXT}",
                              blind_context=testbed.TEST_CONTEXT, blind_extension="silence",
                              accept_timeout_s=accept_timeout_s, ring_timeout_s=5)
    async with ari_stack(bed, agent, transfer=transfer, recording=RecordingConfig(enabled=False)) as stack:
        caller = await call_in(bed, "record", {"TONE": "440", "REC_SECONDS": str(caller_seconds), "REC_NAME": rec})
        caller_ids.append(caller)
        call = await ready_call(stack)
        await asyncio.wait_for(call.done.wait(), caller_seconds + 15)
        for _ in range(100):
            if transfers and transfers[0].done() and not stack.ctl.calls:
                break
            await asyncio.sleep(0.1)
        if action == "accept":  # the caller is no longer the agent's: end it
            await stack.client.hangup(caller)
        for _ in range(10 * (caller_seconds + 5)):  # blind: the caller's own extension ends it
            chan = await stack.client.get_channel(caller)
            if chan is None:
                break
            where.append(chan["dialplan"])
            await asyncio.sleep(0.1)
    assert transfers and transfers[0].done(), "the transfer never returned"
    results[:] = [transfers[0].result()]
    assert call.control is not None
    if not results[0].caller_left and action != "caller-gone":
        assert caller in after, f"the caller is not back with the agent: {after}"
    if mode == "blind":
        assert where and where[0]["context"] == testbed.TEST_CONTEXT and where[0]["exten"] == "silence", where[:1]
    return results[0], call, rec, call.control.call_id


async def test_warm_transfer_accepted(asterisk_bed: testbed.AsteriskBed) -> None:
    result, call, rec, call_id = await run_transfer(asterisk_bed, "accept")
    assert result.outcome == "accepted"
    assert call.ended is not None  # the agent's leg left the call
    human = tones_per_second(await wait_file(asterisk_bed.host_path(f"{testbed.RECORDING_DIR}/human-{call_id}-heard.wav")))
    caller = tones_per_second(await wait_file(asterisk_bed.host_path(f"{testbed.RECORDING_DIR}/{rec}.wav")))
    assert 1000 in human, f"the human did not hear the summary: {human}"
    assert 440 in human, f"the human was never connected to the caller: {human}"
    assert 1000 not in caller, f"the caller heard the summary meant for the human: {caller}"
    assert MOH & set(caller), f"the caller heard no hold music: {caller}"
    assert 700 in caller, f"the caller never heard the human: {caller}"


@pytest.mark.parametrize("action,outcome", [("decline", "declined"), ("silent", "timeout"),
                                            ("hangup", "human_hangup"), ("busy", "busy")])
async def test_warm_transfer_not_taken_returns_the_caller(asterisk_bed: testbed.AsteriskBed, action: str, outcome: str) -> None:
    result, call, rec, _ = await run_transfer(asterisk_bed, action, caller_seconds=12)
    assert result.outcome == outcome
    assert call.ended is not None and call.ended.reason.value == "caller_hangup"  # the caller stayed to the end
    caller = tones_per_second(await wait_file(asterisk_bed.host_path(f"{testbed.RECORDING_DIR}/{rec}.wav")))
    assert 1200 in caller, f"the agent did not get the caller back: {caller}"
    assert 700 not in caller and 1000 not in caller


async def test_caller_hangs_up_on_hold(asterisk_bed: testbed.AsteriskBed) -> None:
    result, call, _, _ = await run_transfer(asterisk_bed, "silent", accept_timeout_s=20, caller_leaves_on_hold=True)
    assert result.outcome == "caller_hangup"


async def test_blind_transfer_sends_the_caller_on(asterisk_bed: testbed.AsteriskBed) -> None:
    """The caller leaves our app and runs the configured extension (run_transfer checks where)."""
    result, call, _, _ = await run_transfer(asterisk_bed, "unused", caller_seconds=6, mode="blind")
    assert result.outcome == "blind"
    assert call.ended is not None  # the agent's leg is gone
