"""Sharing engines between many calls: one scheduler per engine, no global lock.

Each engine gets its own bounded priority queue and its own worker threads (as many as the
engine can run at once: whisper workers, llama instances, piper sessions), so a slow LLM never
holds up STT for another call. Within a queue:
- priority first (`Priority.TURN`: a caller is waiting in silence), FIFO within a priority, so
  no call starves another;
- the queue is bounded: when it is full a new request is shed at once with `EngineBusy` (the
  dialog layer says a polite busy message) rather than waiting unboundedly; a TURN request
  first evicts the newest queued BACKGROUND request if there is one;
- a request whose predicted wait exceeds `max_wait_s` is shed up front, too;
- batchable engines (whisper) take several queued items into one model call.
Every decision is counted in `metrics`, and queue waits are measured on the clock passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
import statistics
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from media.clock import Clock, MonotonicClock
from models.base import Cancelled, CancelToken

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Priority(enum.IntEnum):
    TURN = 0  # a caller is waiting for this (their turn is blocked on it)
    NORMAL = 1
    BACKGROUND = 2  # speculative work, summaries: first to go under load


class EngineBusy(Exception):
    """The engine is saturated and this request was shed (never queued unboundedly)."""

    def __init__(self, engine: str, reason: str, queued: int) -> None:
        super().__init__(f"{engine} busy: {reason} ({queued} queued)")
        self.engine = engine
        self.reason = reason
        self.queued = queued


@dataclass
class SchedulerMetrics:
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    shed: int = 0
    evicted: int = 0
    cancelled: int = 0
    batches: int = 0
    batched_items: int = 0
    max_queued: int = 0
    waits_s: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    runs_s: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    def snapshot(self) -> dict[str, Any]:
        def pct(xs: Sequence[float], q: float) -> float | None:
            if not xs:
                return None
            s = sorted(xs)
            return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2)

        waits = list(self.waits_s)
        return {
            "submitted": self.submitted, "completed": self.completed, "failed": self.failed,
            "shed": self.shed, "evicted": self.evicted, "cancelled": self.cancelled,
            "batches": self.batches, "batched_items": self.batched_items, "max_queued": self.max_queued,
            "wait_ms": {"p50": pct(waits, 0.5), "p95": pct(waits, 0.95), "max": pct(waits, 1.0)},
            "run_ms": {"p50": pct(list(self.runs_s), 0.5), "p95": pct(list(self.runs_s), 0.95)},
        }


@dataclass(eq=False)
class _Job(Generic[R]):
    priority: int
    seq: int
    fn: Callable[[], R] | None  # unit job; None for batch items
    item: Any  # batch item
    future: asyncio.Future[R]
    enqueued_at: float
    cancel: CancelToken | None = None
    dead: bool = False  # cancelled or evicted while queued: skipped by workers

    def __lt__(self, other: _Job[Any]) -> bool:
        return (self.priority, self.seq) < (other.priority, other.seq)


class EngineScheduler:
    """Bounded priority queue + `workers` threads in front of one engine."""

    def __init__(
        self,
        name: str,
        *,
        workers: int = 1,
        max_queue: int = 32,
        max_wait_s: float | None = None,
        clock: Clock | None = None,
        batch_fn: Callable[[list[Any]], list[Any]] | None = None,
        max_batch: int = 8,
    ) -> None:
        if workers < 1 or max_queue < 0:
            raise ValueError("workers must be >= 1 and max_queue >= 0")
        self.name = name
        self.workers = workers
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.clock = clock or MonotonicClock()
        self.batch_fn = batch_fn
        self.max_batch = max_batch
        self.metrics = SchedulerMetrics()
        self._heap: list[_Job[Any]] = []
        self._seq = itertools.count()
        self._wake: asyncio.Condition | None = None
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"engine-{name}")
        self._tasks: list[asyncio.Task[None]] = []
        self.running = 0
        self._closed = False

    # --- lifecycle ---
    def _ensure_started(self) -> asyncio.Condition:
        if self._closed:
            raise RuntimeError(f"scheduler {self.name} is closed")
        if self._wake is None:
            self._wake = asyncio.Condition()
            self._tasks = [asyncio.create_task(self._worker(i), name=f"sched-{self.name}-{i}") for i in range(self.workers)]
        return self._wake

    async def close(self) -> None:
        """Fail queued jobs, stop workers, wait for running engine calls to return."""
        self._closed = True
        for job in self._heap:
            if not job.future.done():
                job.future.set_exception(EngineBusy(self.name, "shutting down", len(self._heap)))
        self._heap.clear()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._executor.shutdown, True)

    @property
    def queued(self) -> int:
        return sum(1 for j in self._heap if not j.dead)

    # --- submitting work ---
    async def run(self, fn: Callable[[], R], *, priority: Priority = Priority.TURN, cancel: CancelToken | None = None) -> R:
        """Run a blocking engine call in this engine's workers; await its result."""
        job: _Job[R] = self._admit(priority, fn, None, cancel)
        return await self._await(job)

    async def submit_item(self, item: Any, *, priority: Priority = Priority.TURN) -> Any:
        """Queue one item for `batch_fn`; queued items are grouped into one engine call."""
        if self.batch_fn is None:
            raise RuntimeError(f"scheduler {self.name} has no batch_fn")
        job: _Job[Any] = self._admit(priority, None, item, None)
        return await self._await(job)

    async def stream(
        self, gen_fn: Callable[[], Iterator[T]], *, priority: Priority = Priority.TURN, cancel: CancelToken | None = None,
        gate: threading.Event | None = None,
    ) -> AsyncGenerator[T, None]:
        """Run a blocking generator in a worker and yield its items as they come.

        Closing the stream (leave it inside `contextlib.aclosing`, or fire `cancel` yourself:
        a bare `break` only closes an async generator when it is garbage-collected) fires
        `cancel`, which the engine checks between steps, so the worker is freed within one
        token/sentence. A cleared `gate` holds the worker between steps until it is set again
        (the caller frees the CPU for another engine for a moment, e.g. TTS of a first clause).
        """
        token = cancel or CancelToken()
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def pump() -> Any:
            gen = gen_fn()
            try:
                while True:
                    while gate is not None and not gate.wait(0.05) and not token.cancelled:
                        pass  # held: the consumer wants the CPU for a moment
                    if token.cancelled:
                        close = getattr(gen, "close", None)
                        if close is not None:
                            close()
                        return None
                    try:
                        value = next(gen)
                    except StopIteration as stop:
                        return stop.value
                    except Cancelled:
                        if token.cancelled:  # the engine honoured our cancel: a normal end
                            return None
                        raise
                    loop.call_soon_threadsafe(items.put_nowait, ("item", value))
            finally:
                loop.call_soon_threadsafe(items.put_nowait, ("end", None))

        job: _Job[Any] = self._admit(priority, pump, None, token)
        runner = asyncio.ensure_future(self._await(job))
        completed = False
        getter: asyncio.Future[tuple[str, Any]] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(items.get())
                await asyncio.wait([getter, runner], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    # The job finished first. Items the thread produced were queued before it
                    # returned (call_soon_threadsafe is FIFO), so drain them, then surface any
                    # error (a job failed or shed before it ran has no "end" marker at all).
                    getter.cancel()
                    while not items.empty():
                        kind, value = items.get_nowait()
                        if kind == "end":
                            break
                        yield value
                    runner.result()
                    completed = True
                    return
                kind, value = getter.result()
                if kind == "end":
                    await runner  # re-raises an engine error
                    completed = True
                    return
                yield value
        finally:
            if getter is not None and not getter.done():
                getter.cancel()  # the consumer was cancelled while waiting for the next item
            if not completed:
                # Left early: stop the engine. Not on normal completion: the caller may share
                # this token across several streams (one reply's LLM and TTS clauses).
                token.cancel("consumer stopped")
            if not runner.done():
                runner.cancel()
                with contextlib.suppress(BaseException):
                    await runner

    # --- internals ---
    def _admit(self, priority: Priority, fn: Callable[[], Any] | None, item: Any, cancel: CancelToken | None) -> _Job[Any]:
        wake = self._ensure_started()
        self.metrics.submitted += 1
        queued = self.queued
        if queued >= self.max_queue and not self._evict_for(priority):
            self.metrics.shed += 1
            raise EngineBusy(self.name, f"queue full (max {self.max_queue})", queued)
        if self.max_wait_s is not None and self.metrics.runs_s:
            ahead = sum(1 for j in self._heap if not j.dead and j.priority <= priority) + max(0, self.running - self.workers + 1)
            predicted = ahead * statistics.median(self.metrics.runs_s) / self.workers
            if predicted > self.max_wait_s:
                self.metrics.shed += 1
                raise EngineBusy(self.name, f"predicted wait {predicted * 1000:.0f} ms > {self.max_wait_s * 1000:.0f} ms", queued)
        job: _Job[Any] = _Job(int(priority), next(self._seq), fn, item, asyncio.get_running_loop().create_future(), self.clock.now(), cancel)
        heapq.heappush(self._heap, job)
        self.metrics.max_queued = max(self.metrics.max_queued, self.queued)
        asyncio.ensure_future(self._notify(wake))
        return job

    async def _notify(self, wake: asyncio.Condition) -> None:
        async with wake:
            wake.notify(1)

    def _evict_for(self, priority: Priority) -> bool:
        """Make room for a more urgent job by shedding the newest, least urgent queued one."""
        victims = [j for j in self._heap if not j.dead and j.priority > priority]
        if not victims:
            return False
        victim = max(victims, key=lambda j: (j.priority, j.seq))
        victim.dead = True
        self.metrics.evicted += 1
        if not victim.future.done():
            victim.future.set_exception(EngineBusy(self.name, "evicted by a more urgent request", self.queued))
        return True

    async def _await(self, job: _Job[R]) -> R:
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            if not job.future.done():
                job.dead = True  # queued: never runs; running: result discarded
                if job.cancel is not None:
                    job.cancel.cancel("caller cancelled")
                self.metrics.cancelled += 1
            raise

    def _pop(self) -> _Job[Any] | None:
        while self._heap:
            job = heapq.heappop(self._heap)
            if not job.dead and not job.future.done():
                return job
        return None

    async def _worker(self, index: int) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            async with self._wake:
                job = self._pop()
                while job is None:
                    await self._wake.wait()
                    job = self._pop()
            batch = [job]
            if job.fn is None:
                while len(batch) < self.max_batch:
                    nxt = self._pop()
                    if nxt is None:
                        break
                    if nxt.fn is not None:  # not a batch item: put it back for another pass
                        heapq.heappush(self._heap, nxt)
                        break
                    batch.append(nxt)
            now = self.clock.now()
            for j in batch:
                self.metrics.waits_s.append(now - j.enqueued_at)
            self.running += 1
            t0 = self.clock.now()
            try:
                if job.fn is not None:
                    result: Any = await loop.run_in_executor(self._executor, job.fn)
                    results = [result]
                else:
                    assert self.batch_fn is not None
                    fn = self.batch_fn
                    items = [j.item for j in batch]
                    results = await loop.run_in_executor(self._executor, lambda: fn(items))
                    self.metrics.batches += 1
                    self.metrics.batched_items += len(batch)
                for j, r in zip(batch, results):
                    if not j.future.done():
                        j.future.set_result(r)
                self.metrics.completed += len(batch)
            except asyncio.CancelledError:
                for j in batch:
                    if not j.future.done():
                        j.future.cancel()
                raise
            except Exception as exc:  # the engine failed: every waiter gets the error
                self.metrics.failed += len(batch)
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)
            finally:
                self.running -= 1
                self.metrics.runs_s.append(self.clock.now() - t0)

