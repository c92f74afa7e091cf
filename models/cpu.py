"""Which engine computations are running on this process's cores right now.

On a CPU box the engines share a few cores. llama.cpp's threads spin at barriers, so a step
spread over a core something else is using collapses (2 vCPUs, the other one spinning in another
process: Qwen 0.5B's first token 812 ms with 2 threads vs 462 ms with 1), while the same step
with the other core idle takes half as long (239 vs 469 ms). So every engine marks its compute
with `computing()`, and the LLM widens a step to the cores nobody is computing on and narrows
again as soon as somebody is (see LlamaLLM; `python -m bench.llm_threads` measures it beside a
real whisper decode). Other processes on the box are not counted.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


class CoreUse:
    """The cores claimed by engine computations in progress (thread-safe; no clock, no I/O)."""

    def __init__(self, cores: int | None = None) -> None:
        self.cores = max(1, cores or os.cpu_count() or 1)
        self._running = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def computing(self, cores: int = 1) -> Iterator[None]:
        """Marks a computation using `cores` threads (0: all of them) while the block runs."""
        n = min(self.cores, cores) if cores > 0 else self.cores
        with self._lock:
            self._running += n
        try:
            yield
        finally:
            with self._lock:
                self._running -= n

    @property
    def running(self) -> int:
        """Cores claimed by computations in progress (more than there are when oversubscribed)."""
        return self._running

    def idle_cores(self) -> int:
        return max(0, self.cores - self._running)


PROCESS = CoreUse()  # the cores are the process's: one count for every engine in it


def llm_threads() -> int:
    """The LLM's threads when others compute: 2, but leave one core to the rest of the process
    (measured on 2 vCPUs with one core busy: 3 tok/s with 2 threads, 22 with 1)."""
    return max(1, min(2, (os.cpu_count() or 1) - 1))
