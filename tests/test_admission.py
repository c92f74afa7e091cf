"""Admission control through the real service (composition root, real engines, AudioSocket
connections as Asterisk makes them): with max_calls=1 a second caller hears the busy message,
synthesised by the agent's own voice, and is hung up; the first call goes on untouched; both
are recorded. Through Asterisk with two SIP calls at once: tests/test_admission_asterisk.py."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from audiosocket import protocol as p
from audiosocket.client import AudioSocketClient
from models import catalog
from models.whisper import WhisperSTT
from phoneagent.admission import BUSY_MESSAGE, Admission
from phoneagent.service import running


@dataclass
class Call:
    is_ended: bool = False


def test_admission_counts_calls_and_refuses_past_the_limit() -> None:
    gate = Admission(2)
    a, b, c = Call(), Call(), Call()
    assert gate.enter(a) and gate.enter(b) and not gate.enter(c)
    assert (gate.active, gate.turned_away) == (2, 1)
    gate.leave(a)
    assert gate.enter(c) and gate.active == 2
    assert all(Admission(None).enter(Call()) for _ in range(100))  # no limit
    with pytest.raises(ValueError, match="max_calls must be >= 1"):
        Admission(0)


def test_a_call_whose_caller_has_gone_frees_its_place_before_its_handler_returns() -> None:
    """Found by bench.surge: two callers redialling at once on room for three heard "busy",
    because both finished calls were still writing their records."""
    gate = Admission(2)
    a, b = Call(), Call()
    assert gate.enter(a) and gate.enter(b)
    a.is_ended = True  # the caller hung up; the dialog is still cleaning up (leave() not yet called)
    assert gate.active == 1 and gate.enter(Call())
    gate.leave(a)  # later, when the handler returns: nothing changes
    assert gate.active == 2 and not gate.enter(Call())


async def _audio_until_hangup(client: AudioSocketClient, timeout_s: float = 30.0) -> tuple[bytes, bool]:
    pcm, deadline = bytearray(), asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        await client.send_audio(bytes(640), 16000)
        ev = await client.recv(timeout=5)
        if isinstance(ev, p.Audio):
            pcm += ev.pcm
        elif isinstance(ev, (p.Hangup, p.Closed)):
            return bytes(pcm), isinstance(ev, p.Hangup)
    raise AssertionError("no hangup after the busy message")


async def test_a_full_service_tells_the_next_caller_and_hangs_up_while_the_first_call_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    async with running("127.0.0.1", 0, agent="dialog", db_url=url, max_calls=1) as svc:
        first = await AudioSocketClient.connect("127.0.0.1", svc.server.port, call_id=uuid.uuid4())
        await first.send_audio(bytes(640), 16000)
        for _ in range(100):  # the first call is being served
            if svc.admission is not None and svc.admission.active == 1:
                break
            await asyncio.sleep(0.05)
        second = await AudioSocketClient.connect("127.0.0.1", svc.server.port, call_id=uuid.uuid4())
        heard, hung_up = await _audio_until_hangup(second)
        assert hung_up, "a turned-away caller gets a hangup frame, not a dropped connection"
        assert svc.admission is not None and svc.admission.turned_away == 1 and svc.admission.active == 1
        await second.close()
        await first.send_audio(bytes(640), 16000)  # the first call is still up
        assert svc.server.sessions and str(first.call_id) in {str(k) for k in svc.server.sessions}
        await first.close()
        for _ in range(100):
            view = await svc.store.get_call(str(second.call_id))
            if view is not None and view.ended_at is not None:
                break
            await asyncio.sleep(0.05)
        assert view is not None and view.outcome == "busy" and view.disposition and "max_calls 1" in view.disposition
        assert [t.text for t in view.turns] == [BUSY_MESSAGE]
        metrics = svc.metrics.render().decode()
        assert 'phoneagent_calls_total{outcome="busy"} 1.0' in metrics
    text = (await asyncio.to_thread(WhisperSTT(catalog.whisper_tiny_en(), device="cpu").transcribe, heard, 16000)).text.lower()
    assert "busy" in text and "try again" in text, text
