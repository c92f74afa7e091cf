"""Admission control through Asterisk 22: two SIP callers at once (SIPp, G.711, the ARI path)
on a service with room for one. The first is served by the agent; the second hears the busy
message (what the caller heard, recorded on its SIP leg, then transcribed) and is hung up by
the agent (SIPp sees the BYE); both are recorded; nothing is left in Asterisk."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from devtools.ports import free_tcp_port
from devtools import sipcall, testbed
from devtools.demo import heard_by_caller
from devtools.testbed_ari import ari_config
from devtools.utterances import synthesize_set
from media.pcm import resample
from models import catalog
from models.whisper import WhisperSTT
from phoneagent.service import running
from tests.ari.harness import assert_nothing_left

pytestmark = pytest.mark.asterisk



async def test_with_room_for_one_call_the_second_caller_hears_busy_and_is_hung_up(
        asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    bed, port, rec = asterisk_bed, free_tcp_port(), f"busy-{uuid.uuid4().hex[:10]}"
    bill = resample(synthesize_set()[0].pcm16k, 16000, 8000)
    async with running("127.0.0.1", port, agent="dialog", db_url=f"sqlite:///{tmp_path}/calls.db", ari=ari_config(bed),
                       max_calls=1) as svc:
        assert svc.admission is not None
        first = asyncio.create_task(asyncio.to_thread(
            sipcall.place_call, bed.sip_host, bed.sip_port, "agent-ari",
            [sipcall.Pause(3000), sipcall.Audio(bill), sipcall.Pause(9000)], wait_for_bye=False))
        for _ in range(300):
            if svc.admission.active == 1:
                break
            await asyncio.sleep(0.05)
        assert svc.admission.active == 1, "the first call never reached the agent"
        second = await asyncio.to_thread(sipcall.place_call, bed.sip_host, bed.sip_port, "agent-ari-rec", [sipcall.Pause(20000)],
                                         headers={"X-Phoneagent-Rec": rec}, wait_for_bye=True)
        assert second.ok, f"the turned-away caller got no BYE: {second.errors}"
        assert svc.admission.turned_away == 1
        assert (await first).ok
        for _ in range(200):
            calls = await svc.store.list_calls()
            if len(calls) == 2 and all(c.ended_at for c in calls):
                break
            await asyncio.sleep(0.05)
        by_outcome = {c.outcome: c for c in calls}
        assert set(by_outcome) == {"busy", "completed"}, [(c.outcome, c.end_reason) for c in calls]
        served = await svc.store.get_call(by_outcome["completed"].id)
        assert served is not None and any(t.role == "caller" and "bill" in t.text.lower() for t in served.turns), served
    heard = await asyncio.to_thread(heard_by_caller, bed, rec)
    assert heard is not None, "no recording of what the second caller heard"
    rate, pcm = heard
    text = (await asyncio.to_thread(WhisperSTT(catalog.whisper_tiny_en(), device="cpu").transcribe, pcm, rate)).text.lower()
    assert "busy" in text, text
    await assert_nothing_left(bed)
