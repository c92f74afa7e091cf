"""Prometheus metrics for the service (the official client, its own registry), served at
/metrics on the service's HTTP port.

What a call does is already written to the call store (start, turns with their timings, events,
finish), so the metrics observe those writes (`MeteredStore`) rather than reach into the dialog:
one source of truth, and the audio path gains nothing but a few counter increments. The engine
queues are read when Prometheus scrapes.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from db import AsyncCallStore, CallStore
from db.schema import TurnTimings
from phoneagent.records import stages
from phoneagent.console.live import LiveCalls

# Seconds: a turn is felt past ~0.7 s; a slow CPU box runs 1-3 s at load.
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
# Events worth a counter of their own (the rest are in the call record only).
COUNTED = frozenset({"barge_in", "backchannel", "transfer", "transfer_unavailable", "engine_error", "busy", "filler", "unclear",
                     "slot_confirmed", "slot_dropped", "false_alarm_resume", "no_input_hangup", "tool_ungrounded"})

EngineSnapshots = Callable[[], Mapping[str, Mapping[str, Any]]]  # models.engines.Engines.metrics


class CallMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active = Gauge("phoneagent_calls_active", "Calls in progress on this service", registry=r)
        self.calls = Counter("phoneagent_calls", "Calls finished, by outcome", ["outcome"], registry=r)
        self.stage = Histogram("phoneagent_turn_stage_seconds", "Agent turn latency by stage, from the caller's last word "
                               "(endpoint, stt, llm, tts, wire; v2v is the whole)", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.events = Counter("phoneagent_events", "Dialog events by kind", ["kind"], registry=r)
        self.tools = Counter("phoneagent_tool_calls", "Tool calls by tool and result", ["tool", "result"], registry=r)
        self.transfers = Counter("phoneagent_transfers", "Warm/blind transfers by outcome", ["outcome"], registry=r)
        self.amd = Counter("phoneagent_amd", "Answering-machine detection on outbound calls, by outcome", ["outcome"], registry=r)
        self._engines: list[tuple[str, EngineSnapshots]] = []
        r.register(_EngineQueues(self._engines))
        self.spooled = Gauge("phoneagent_records_spooled", "Call-log writes waiting on local disk for the database", registry=r)
        # Apart from native memory (engines): is it our own objects that grow? Costs nothing
        # unless the service runs with PYTHONTRACEMALLOC=1 (slower; for a soak, not production).
        self.heap = Gauge("phoneagent_python_heap_bytes", "Memory held by Python objects (tracemalloc), "
                          "when the service runs with PYTHONTRACEMALLOC=1; 0 otherwise", registry=r)
        self.heap.set_function(lambda: float(tracemalloc.get_traced_memory()[0]) if tracemalloc.is_tracing() else 0.0)

    def watch_spool(self, pending: Callable[[], int]) -> None:
        """The spool's depth, read at scrape time (anything above 0: the database is or was down)."""
        self.spooled.set_function(lambda: float(pending()))

    def watch_engines(self, name: str, snapshots: EngineSnapshots) -> None:
        """Report this engine set's queues (one per agent variant), read at scrape time."""
        self._engines.append((name, snapshots))

    def turn(self, timings: TurnTimings) -> None:
        for name, ms in stages(timings).items():
            self.stage.labels(name).observe(max(ms, 0.0) / 1000)

    def event(self, kind: str, detail: Mapping[str, Any] | None) -> None:
        d = detail or {}
        if kind in COUNTED:
            self.events.labels(kind).inc()
        if kind == "tool_call":
            self.tools.labels(str(d.get("name", "?")), "ok" if d.get("ok") else str(d.get("kind") or "error")).inc()
        elif kind == "transfer":
            self.transfers.labels(str(d.get("outcome", "?"))).inc()
        elif kind == "amd":
            self.amd.labels(str(d.get("outcome", "?"))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineQueues(Collector):
    """Engine scheduler figures (models/scheduler.py) at scrape time: totals as counters,
    the recent queue-wait percentiles as gauges."""

    def __init__(self, sources: list[tuple[str, EngineSnapshots]]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        done = CounterMetricFamily("phoneagent_engine_jobs", "Engine jobs by engine set, engine and result", labels=["set", "engine", "result"])
        wait = GaugeMetricFamily("phoneagent_engine_queue_wait_seconds", "Recent queue wait before an engine ran a job",
                                 labels=["set", "engine", "quantile"])
        for name, snapshots in self.sources:
            for engine, snap in snapshots().items():
                for result in ("completed", "failed", "shed", "cancelled"):
                    done.add_metric([name, engine, result], float(snap.get(result, 0)))
                for q, key in (("0.5", "p50"), ("0.95", "p95"), ("1", "max")):
                    ms = (snap.get("wait_ms") or {}).get(key)
                    if ms is not None:
                        wait.add_metric([name, engine, q], ms / 1000)
        yield done
        yield wait


class MeteredStore(AsyncCallStore):
    """The call store, observed: every write also updates the metrics and the console's live
    view (`live`), then goes on unchanged."""

    def __init__(self, store: CallStore | str, metrics: CallMetrics, live: LiveCalls | None = None) -> None:
        super().__init__(store)
        self.metrics = metrics
        self.live = live
        self._open: set[str] = set()

    async def start_call(self, call_id: str, **kw: Any) -> None:
        if call_id not in self._open:
            self._open.add(call_id)
            self.metrics.active.inc()
        if self.live is not None:
            self.live.started(call_id, **kw)
        await super().start_call(call_id, **kw)

    async def finish_call(self, call_id: str, **kw: Any) -> None:
        if call_id in self._open:
            self._open.discard(call_id)
            self.metrics.active.dec()
        self.metrics.calls.labels(str(kw.get("outcome") or kw.get("end_reason") or "unknown")).inc()
        if self.live is not None:
            self.live.finished(call_id, **kw)
        await super().finish_call(call_id, **kw)

    async def add_turn(self, call_id: str, role: str, text: str, **kw: Any) -> int:
        timings = kw.get("timings")
        if role == "agent" and isinstance(timings, TurnTimings):
            self.metrics.turn(timings)
        if self.live is not None:
            self.live.turn(call_id, role, text, **kw)
        result: int = await super().add_turn(call_id, role, text, **kw)
        return result

    async def add_event(self, call_id: str, t_ms: float, kind: str, detail: dict[str, Any] | None = None) -> None:
        self.metrics.event(kind, detail)
        if self.live is not None:
            self.live.event(call_id, t_ms, kind)
        await super().add_event(call_id, t_ms, kind, detail)


def metrics_app(metrics: CallMetrics, readiness: Callable[[], dict[str, Any]] | None = None) -> web.Application:
    """/metrics, and /healthz: 200 when `readiness()["ok"]` (taking calls), else 503 with what
    is missing, so a load balancer or a test sends calls only to a service that can answer."""
    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        state = readiness() if readiness is not None else {"ok": True}
        return web.json_response(state, status=200 if state["ok"] else 503)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", health)
    return app
