"""Prometheus metrics: what the call store is told becomes counters and histograms, engine
queues are read at scrape time, and the output parses with the official client's parser."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from db.schema import TurnTimings
from phoneagent.metrics import CallMetrics, MeteredStore


def samples(metrics: CallMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}


async def test_a_call_written_to_the_store_is_counted(tmp_path: Path) -> None:
    metrics = CallMetrics()
    snapshot: dict[str, Any] = {"stt": {"completed": 7, "failed": 0, "shed": 2, "cancelled": 1,
                                        "wait_ms": {"p50": 12.0, "p95": 80.0, "max": 120.0}}}
    metrics.watch_engines("0", lambda: snapshot)
    store = MeteredStore(f"sqlite:///{tmp_path}/calls.db", metrics)
    cid = str(uuid.uuid4())
    try:
        await store.start_call(cid, direction="inbound", caller="+15551234567", agent="shipments")
        assert samples(metrics)[("phoneagent_calls_active", ())] == 1
        await store.add_turn(cid, "caller", "Is order 4572 late?", timings=TurnTimings(speech_end_ms=1000.0, endpoint_ms=1512.0))
        await store.add_turn(cid, "agent", "Order 4 5 7 2 is delayed.", timings=TurnTimings(
            speech_end_ms=1000.0, endpoint_ms=1512.0, stt_done_ms=1700.0, llm_first_token_ms=1900.0, tts_first_audio_ms=2100.0,
            first_frame_ms=2110.0))
        await store.add_event(cid, 1800.0, "tool_call", {"name": "order_status", "ok": True})
        await store.add_event(cid, 2500.0, "tool_call", {"name": "order_status", "ok": False, "kind": "unavailable"})
        await store.add_event(cid, 3000.0, "barge_in", {"t_speech_start": 3.0})
        await store.add_event(cid, 4000.0, "transfer", {"outcome": "accepted"})
        await store.add_event(cid, 4100.0, "speculation_used")  # in the record only
        await store.finish_call(cid, end_reason="transferred", outcome="transferred")
        view = await store.get_call(cid)  # the writes reached the database too
        assert view is not None and len(view.turns) == 2 and len(view.events) == 5 and view.outcome == "transferred"
    finally:
        await store.aclose()
    s = samples(metrics)
    assert s[("phoneagent_calls_active", ())] == 0
    assert s[("phoneagent_calls_total", (("outcome", "transferred"),))] == 1
    assert s[("phoneagent_turn_stage_seconds_count", (("stage", "v2v"),))] == 1  # agent turns only
    assert s[("phoneagent_turn_stage_seconds_sum", (("stage", "v2v"),))] == 1.11
    assert s[("phoneagent_turn_stage_seconds_sum", (("stage", "endpoint"),))] == 0.512
    assert s[("phoneagent_turn_stage_seconds_bucket", (("le", "1.0"), ("stage", "v2v")))] == 0
    assert s[("phoneagent_turn_stage_seconds_bucket", (("le", "1.5"), ("stage", "v2v")))] == 1
    assert s[("phoneagent_tool_calls_total", (("result", "ok"), ("tool", "order_status")))] == 1
    assert s[("phoneagent_tool_calls_total", (("result", "unavailable"), ("tool", "order_status")))] == 1
    assert s[("phoneagent_events_total", (("kind", "barge_in"),))] == 1
    assert s[("phoneagent_transfers_total", (("outcome", "accepted"),))] == 1
    assert ("phoneagent_events_total", (("kind", "speculation_used"),)) not in s
    assert s[("phoneagent_engine_jobs_total", (("engine", "stt"), ("result", "shed"), ("set", "0")))] == 2
    assert s[("phoneagent_engine_queue_wait_seconds", (("engine", "stt"), ("quantile", "0.95"), ("set", "0")))] == 0.08


def test_python_heap_is_reported_only_while_tracemalloc_traces() -> None:
    import tracemalloc

    def heap(m: CallMetrics) -> float:
        fam = {f.name: f for f in text_string_to_metric_families(m.render().decode())}["phoneagent_python_heap_bytes"]
        return float(fam.samples[0].value)

    metrics = CallMetrics()
    assert not tracemalloc.is_tracing() and heap(metrics) == 0.0
    tracemalloc.start()
    try:
        held = [bytearray(1 << 20) for _ in range(4)]  # 4 MiB of Python objects
        assert heap(metrics) >= 4 * (1 << 20)
        del held
    finally:
        tracemalloc.stop()
    assert heap(metrics) == 0.0
