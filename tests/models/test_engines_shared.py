"""All four real engines loaded once and shared by many concurrent "calls" through the schedulers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from media.pcm import resample
from devtools.utterances import synthesize_set
from models.base import CancelToken, Message
from models.engines import EngineConfig, Engines
from models.normalize import wer
from models.scheduler import EngineBusy, Priority


@pytest.fixture(scope="module")
def engines() -> Engines:
    return Engines.load(EngineConfig(stt_workers=1, llm_pool=1, tts_workers=1))


@pytest.fixture
async def shared(engines: Engines) -> AsyncIterator[Engines]:
    # schedulers bind to the running loop: fresh ones per test, engines loaded once
    fresh = engines.sharing()
    yield fresh
    await fresh.close_schedulers()


def test_engines_load_and_describe_themselves(engines: Engines) -> None:
    roles = [i.role for i in engines.infos]
    assert roles == ["vad", "stt", "llm", "tts", "turn"]
    assert all(i.device in ("cpu", "cuda") for i in engines.infos)
    assert set(engines.load_s) == {"vad", "stt", "llm", "tts", "turn"}


async def test_the_end_of_turn_model_runs_beside_a_busy_stt(shared: Engines) -> None:
    """Its own worker: a verdict does not wait for the STT queue, which is busy with a batch."""
    utts = synthesize_set()
    question = resample(utts[8].pcm16k, 16000, 8000)  # "What time do you close on Saturday?"
    stt = [asyncio.ensure_future(shared.transcribe(resample(u.pcm16k, 16000, 8000), 8000)) for u in utts[:6]]
    p = await shared.end_of_turn(question, 8000)
    assert not all(f.done() for f in stt), "the verdict came after the whole STT batch"
    await asyncio.gather(*stt)
    assert 0.0 <= p <= 1.0 and p > 0.5


async def test_concurrent_calls_share_every_engine(shared: Engines) -> None:
    utts = synthesize_set()[:6]

    async def one_call(i: int) -> tuple[str, int, int]:
        u = utts[i]
        pcm8k = resample(u.pcm16k, 16000, 8000)
        text = (await shared.transcribe(pcm8k, 8000)).normalized
        cancel = CancelToken()
        toks = [t.text async for t in shared.reply_tokens([Message("user", text or "hello")], cancel=cancel, session_key=f"call-{i}", max_tokens=8)]
        audio = [c async for c in shared.speak("Thanks, one moment.", 8000, cancel=CancelToken())]
        return text, len(toks), sum(len(c.pcm) for c in audio)

    results = await asyncio.gather(*(one_call(i) for i in range(6)))
    assert all(text for text, _, _ in results), results
    assert all(n >= 1 for _, n, _ in results)
    assert all(nbytes > 8000 for _, _, nbytes in results)  # > 0.5 s of 8 kHz speech each
    m = shared.metrics()
    assert m["stt"]["completed"] == 6 and m["llm"]["completed"] == 6 and m["tts"]["completed"] == 6
    assert m["stt"]["batches"] < 6, "queued utterances should have been batched into fewer whisper calls"
    assert m["stt"]["wait_ms"]["max"] is not None


async def test_queued_turns_with_and_without_a_prompt_each_get_their_own_decode(shared: Engines) -> None:
    """A caller asked for a number (prompt, n-best) queued with plain turns: the batch splits by
    (prompt, hypotheses) and every result goes back to its own caller."""
    utts = synthesize_set()[:4]
    pcms = [resample(u.pcm16k, 16000, 8000) for u in utts]
    plain = [asyncio.ensure_future(shared.transcribe(p, 8000)) for p in pcms]
    asked = asyncio.ensure_future(shared.transcribe(pcms[1], 8000, prompt="5 5 5, 2 3 4, 9 8 7 6.", hypotheses=3))
    results = await asyncio.gather(*plain)
    alone = [await shared.transcribe(p, 8000) for p in pcms]
    for i, r in enumerate(results):  # nobody got another caller's text (a batch's padding may change a word)
        assert wer(alone[i].text, r.text) < min(wer(a.text, r.text) for j, a in enumerate(alone) if j != i), (r.text, alone)
    assert all(r.alternatives == () for r in results)
    assert (await asyncio.wait_for(asked, 30)).alternatives


async def test_saturated_stt_sheds_with_engine_busy(engines: Engines) -> None:
    cfg = EngineConfig(max_queue={"stt": 1, "llm": 4, "tts": 4})
    small = engines.sharing(config=cfg)
    pcm = synthesize_set()[0].pcm16k
    outcomes = await asyncio.gather(*(small.transcribe(pcm, 16000) for _ in range(6)), return_exceptions=True)
    busy = [o for o in outcomes if isinstance(o, EngineBusy)]
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    assert busy and done and len(busy) + len(done) == 6
    assert small.metrics()["stt"]["shed"] == len(busy)
    await small.close_schedulers()


async def test_barge_in_cancels_generation_and_frees_the_llm(shared: Engines) -> None:
    cancel = CancelToken()
    got = []
    async for tok in shared.reply_tokens([Message("user", "Tell me a long story about the sea.")], cancel=cancel, max_tokens=200):
        got.append(tok)
        if len(got) == 3:
            cancel.cancel("barge-in")
            break
    assert len(got) == 3
    # the single LLM worker is free again at once: a TURN request runs next
    toks = [t async for t in shared.reply_tokens([Message("user", "Hi")], cancel=CancelToken(), max_tokens=2, priority=Priority.TURN)]
    assert toks
