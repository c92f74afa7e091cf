"""The engines' shared count of busy cores, and the LLM widening onto idle ones (real gemma)."""

from __future__ import annotations

import threading

import llama_cpp
import pytest

from models import catalog
from models.base import Message
from models.cpu import CoreUse
from models.llama import LlamaLLM


def test_computations_claim_cores_while_they_run_and_release_them_on_error() -> None:
    use = CoreUse(cores=4)
    assert use.idle_cores() == 4
    with use.computing():
        assert use.idle_cores() == 3
        with use.computing(2):
            assert (use.running, use.idle_cores()) == (3, 1)
        with use.computing(0):  # every core (onnxruntime's default threads)
            assert use.idle_cores() == 0
    with pytest.raises(RuntimeError), use.computing(9):  # more than there are: all of them
        assert use.running == 4
        raise RuntimeError
    assert use.running == 0


def test_the_count_is_exact_under_threads() -> None:
    use = CoreUse(cores=2)

    def work() -> None:
        for _ in range(2000):
            with use.computing():
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert use.running == 0


@pytest.fixture(scope="module")
def gemma_path() -> str:
    return str(catalog.get(catalog.load_catalog(), "gemma-3-270m").path)


def _threads_used(llm: LlamaLLM) -> tuple[int, int]:
    ctx = llm._slots[0].llm.ctx
    return llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)


def test_the_llm_spreads_over_idle_cores_and_narrows_while_another_engine_computes(gemma_path: str) -> None:
    use = CoreUse(cores=2)
    llm = LlamaLLM(gemma_path, n_threads=1, cores=use)
    try:
        llm.warmup()
        assert llm.max_threads == 2 and llm.threads_now() == 2
        seen: list[int] = []
        for _tok in llm.stream([Message("user", "Count to three.")], max_tokens=3):
            seen.append(use.running)  # between steps: nothing of its own is counted
        assert _threads_used(llm) == (2, 2) and seen == [0] * len(seen)
        with use.computing():  # e.g. a whisper decode on one core
            assert llm.threads_now() == 1
            for _tok in llm.stream([Message("user", "Count to four.")], max_tokens=3):
                pass
            assert _threads_used(llm) == (1, 1)
    finally:
        llm.close()


def test_fixed_threads_when_asked(gemma_path: str) -> None:
    llm = LlamaLLM(gemma_path, n_threads=1, max_threads=1, cores=CoreUse(cores=2))
    try:
        llm.warmup()
        assert llm.threads_now() == 1 and _threads_used(llm) == (1, 1)
    finally:
        llm.close()
