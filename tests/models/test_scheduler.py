"""The per-engine scheduler: priority, fairness, bounded queues, shedding, batching, streaming.

The "engines" here are plain blocking functions gated by threading.Events: the scheduler is
what is under test, and gates make every interleaving deterministic (no sleeps, no timing).
Real engines go through the same scheduler in tests/models/test_engines_shared.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Iterator

import pytest

from models.base import Cancelled, CancelToken, EngineError
from models.scheduler import EngineBusy, EngineScheduler, Priority


class Gate:
    """A blocking 'engine call' that waits until the test opens it, recording the order run."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started = threading.Event()
        self.order: list[str] = []
        self.lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    def job(self, name: str) -> str:
        with self.lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            self.order.append(name)
        self.started.set()
        self.opened.wait(10)
        with self.lock:
            self.concurrent -= 1
        return name


async def _until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


async def test_priority_first_then_fifo() -> None:
    s = EngineScheduler("t", workers=1, max_queue=10)
    g = Gate()
    first = asyncio.ensure_future(s.run(lambda: g.job("blocker")))
    await asyncio.to_thread(g.started.wait, 5)
    names = [("bg1", Priority.BACKGROUND), ("turn1", Priority.TURN), ("n1", Priority.NORMAL), ("turn2", Priority.TURN), ("bg2", Priority.BACKGROUND)]
    futs = [asyncio.ensure_future(s.run(functools.partial(g.job, n), priority=p)) for n, p in names]
    await _until(lambda: s.queued == 5)
    g.opened.set()
    await asyncio.gather(first, *futs)
    assert g.order == ["blocker", "turn1", "turn2", "n1", "bg1", "bg2"]
    snap = s.metrics.snapshot()
    assert snap["completed"] == 6 and snap["wait_ms"]["max"] is not None
    await s.close()


async def test_never_more_than_workers_at_once_and_all_complete() -> None:
    s = EngineScheduler("t", workers=3, max_queue=200)
    g = Gate()
    futs = [asyncio.ensure_future(s.run(functools.partial(g.job, str(i)))) for i in range(100)]
    await _until(lambda: g.concurrent == 3)
    g.opened.set()
    results = await asyncio.gather(*futs)
    assert sorted(results, key=int) == [str(i) for i in range(100)]
    assert g.max_concurrent == 3
    # FIFO start order within one priority: job i never starts before job i-3
    assert all(int(name) < pos + 3 for pos, name in enumerate(g.order))
    await s.close()


async def test_full_queue_sheds_at_once_with_a_clear_reason() -> None:
    s = EngineScheduler("stt", workers=1, max_queue=2)
    g = Gate()
    running = asyncio.ensure_future(s.run(lambda: g.job("r")))
    await asyncio.to_thread(g.started.wait, 5)
    q1 = asyncio.ensure_future(s.run(lambda: g.job("q1")))
    q2 = asyncio.ensure_future(s.run(lambda: g.job("q2")))
    await _until(lambda: s.queued == 2)
    with pytest.raises(EngineBusy, match=r"stt busy: queue full \(max 2\) \(2 queued\)") as info:
        await s.run(lambda: g.job("shed"))
    assert info.value.engine == "stt"
    g.opened.set()
    await asyncio.gather(running, q1, q2)
    assert "shed" not in g.order and s.metrics.shed == 1
    await s.close()


async def test_turn_request_evicts_newest_background_when_full() -> None:
    s = EngineScheduler("llm", workers=1, max_queue=2)
    g = Gate()
    running = asyncio.ensure_future(s.run(lambda: g.job("r")))
    await asyncio.to_thread(g.started.wait, 5)
    bg_old = asyncio.ensure_future(s.run(lambda: g.job("bg_old"), priority=Priority.BACKGROUND))
    bg_new = asyncio.ensure_future(s.run(lambda: g.job("bg_new"), priority=Priority.BACKGROUND))
    await _until(lambda: s.queued == 2)
    turn = asyncio.ensure_future(s.run(lambda: g.job("turn")))
    await asyncio.sleep(0)
    with pytest.raises(EngineBusy, match="evicted"):
        await bg_new
    g.opened.set()
    await asyncio.gather(running, bg_old, turn)
    assert g.order == ["r", "turn", "bg_old"]
    assert s.metrics.evicted == 1
    await s.close()


async def test_predicted_wait_sheds_up_front() -> None:
    s = EngineScheduler("tts", workers=1, max_queue=100, max_wait_s=0.5)
    s.metrics.runs_s.extend([0.3] * 5)  # history: each call takes 300 ms
    g = Gate()
    running = asyncio.ensure_future(s.run(lambda: g.job("r")))
    await asyncio.to_thread(g.started.wait, 5)
    q = asyncio.ensure_future(s.run(lambda: g.job("q")))  # predicted 300-600 ms: still admitted
    await _until(lambda: s.queued == 1)
    with pytest.raises(EngineBusy, match="predicted wait"):
        await s.run(lambda: g.job("late"))
    g.opened.set()
    await asyncio.gather(running, q)
    await s.close()


async def test_cancelled_while_queued_never_runs() -> None:
    s = EngineScheduler("t", workers=1, max_queue=10)
    g = Gate()
    running = asyncio.ensure_future(s.run(lambda: g.job("r")))
    await asyncio.to_thread(g.started.wait, 5)
    doomed = asyncio.ensure_future(s.run(lambda: g.job("doomed")))
    after = asyncio.ensure_future(s.run(lambda: g.job("after")))
    await _until(lambda: s.queued == 2)
    doomed.cancel()
    g.opened.set()
    await asyncio.gather(running, after)
    assert g.order == ["r", "after"] and s.metrics.cancelled == 1
    await s.close()


async def test_engine_error_reaches_the_caller_and_worker_survives() -> None:
    s = EngineScheduler("t", workers=1)

    def boom() -> str:
        raise EngineError("model crashed")

    with pytest.raises(EngineError, match="model crashed"):
        await s.run(boom)
    assert await s.run(lambda: "ok") == "ok"
    assert s.metrics.failed == 1
    await s.close()


async def test_batch_items_are_grouped_into_one_engine_call() -> None:
    calls: list[list[int]] = []
    g = Gate()

    def batch(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [i * 10 for i in items]

    s = EngineScheduler("stt", workers=1, max_queue=50, batch_fn=batch, max_batch=4)
    blocker = asyncio.ensure_future(s.run(lambda: g.job("b")))
    await asyncio.to_thread(g.started.wait, 5)
    futs = [asyncio.ensure_future(s.submit_item(i)) for i in range(6)]
    await _until(lambda: s.queued == 6)
    g.opened.set()
    assert await asyncio.gather(*futs) == [0, 10, 20, 30, 40, 50]
    await blocker
    assert calls == [[0, 1, 2, 3], [4, 5]]
    assert s.metrics.batches == 2 and s.metrics.batched_items == 6
    await s.close()


async def test_stream_yields_in_order_and_early_exit_cancels_the_engine() -> None:
    s = EngineScheduler("llm", workers=1)
    produced: list[int] = []
    token = CancelToken()
    step = threading.Semaphore(0)

    def gen() -> Iterator[int]:
        for i in range(1000):
            step.acquire(timeout=5)
            if token.cancelled:
                return
            produced.append(i)
            yield i

    got: list[int] = []
    for _ in range(5):
        step.release()
    async with contextlib.aclosing(s.stream(gen, cancel=token)) as tokens:
        async for tok in tokens:
            got.append(tok)
            if len(got) == 3:
                break
    for _ in range(3):
        step.release()
    await _until(lambda: s.running == 0)
    assert got == [0, 1, 2]
    assert token.cancelled
    assert len(produced) <= 6  # stopped within a step or two of the consumer leaving
    assert await s.run(lambda: "free") == "free"  # the worker was released
    await s.close()


async def test_a_cleared_gate_holds_the_stream_between_steps_and_cancel_still_frees_it() -> None:
    """The dialog clears the gate while the first clause is synthesised (CPU boxes)."""
    s = EngineScheduler("llm", workers=1)
    produced: list[int] = []

    def gen() -> Iterator[int]:
        for i in range(100):
            time.sleep(0.01)  # a decode step
            produced.append(i)
            yield i

    gate = threading.Event()
    gate.set()
    got: list[int] = []
    async with contextlib.aclosing(s.stream(gen, gate=gate)) as tokens:
        async for tok in tokens:
            got.append(tok)
            if tok == 1:
                gate.clear()
                await asyncio.sleep(0.3)  # held: the engine takes at most the step it was in
                held = len(produced)
                assert held < 10, produced  # not the 100 it would have run to
                await asyncio.sleep(0.2)
                assert len(produced) == held
                gate.set()
            if tok == 10:
                break
    assert got == list(range(11))

    token = CancelToken()
    gate.clear()
    async with contextlib.aclosing(s.stream(gen, cancel=token, gate=gate)) as tokens:
        token.cancel()  # cancelled while held: the worker leaves without the gate ever opening
        assert [x async for x in tokens] in ([], [0])
    await _until(lambda: s.running == 0)
    assert await s.run(lambda: "free") == "free"
    await s.close()


async def test_stream_returns_everything_and_surfaces_errors() -> None:
    s = EngineScheduler("tts", workers=2)

    def ok() -> Iterator[str]:
        yield from ["a", "b", "c"]

    def bad() -> Iterator[str]:
        yield "x"
        raise EngineError("synth failed")

    shared = CancelToken()
    assert [x async for x in s.stream(ok, cancel=shared)] == ["a", "b", "c"]
    assert not shared.cancelled  # a finished stream leaves a shared token alone
    got: list[str] = []
    with pytest.raises(EngineError, match="synth failed"):
        async for x in s.stream(bad):
            got.append(x)
    assert got == ["x"]
    await s.close()


async def test_close_fails_queued_work_cleanly() -> None:
    s = EngineScheduler("t", workers=1, max_queue=10)
    g = Gate()
    running = asyncio.ensure_future(s.run(lambda: g.job("r")))
    await asyncio.to_thread(g.started.wait, 5)
    queued = asyncio.ensure_future(s.run(lambda: g.job("q")))
    await _until(lambda: s.queued == 1)
    closing = asyncio.ensure_future(s.close())
    with pytest.raises(EngineBusy, match="shutting down"):
        await queued
    g.opened.set()
    await closing
    with pytest.raises((asyncio.CancelledError, EngineBusy)):
        await running
    with pytest.raises(RuntimeError, match="closed"):
        await s.run(lambda: "x")


async def test_engine_raising_cancelled_after_our_cancel_is_a_clean_stop() -> None:
    """Piper raises Cancelled when its token fires mid-reply; that must not look like a failure
    (the dialog would otherwise speak its 'technical trouble' fallback after every barge-in)."""
    s = EngineScheduler("tts", workers=1)
    token = CancelToken()

    def gen() -> Iterator[str]:
        yield "clause 1"
        token.cancel("barge-in")
        token.raise_if_cancelled()
        yield "never"

    got = [x async for x in s.stream(gen, cancel=token)]
    assert got == ["clause 1"] and s.metrics.failed == 0

    def rogue() -> Iterator[str]:
        raise Cancelled("not ours")
        yield "x"

    with pytest.raises(Cancelled):
        async for _ in s.stream(rogue):
            pass
    await s.close()
