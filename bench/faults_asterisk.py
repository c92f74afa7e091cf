"""Rows of the fault table that need the real Asterisk: the service (as its own process, real
engines, `phoneagent serve --ari`) killed, cut off by a network partition, Asterisk restarted, the
recordings disk full and SIGTERM, each with a SIPp caller (G.711) on the line. "Heard" is whisper over Asterisk's own
recording of the caller's leg (the dialplan's X-Phoneagent-Rec header). Run by bench/faults.py
(`--only service-killed,...`) and tests/test_faults_asterisk.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from ari_app.config import ControllerConfig
from audiosocket.server import PEER_TIMEOUT_DEFAULT_S
from bench.faults import Row
from bench.soak import ari_leftovers, process_sample
from db import CallStore
from db.schema import CallView
from devtools import sipcall, testbed
from devtools.netns import dropping
from devtools.demo import heard_by_caller
from devtools.ear import heard_words
from devtools.serve import serving
from models.base import STT

LEASE_S = ControllerConfig().lease_s  # what the service runs with
PEER_TIMEOUT_S = PEER_TIMEOUT_DEFAULT_S


async def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def fresh(tmp: Path, name: str) -> tuple[testbed.AsteriskBed, str, str]:
    """The running bed, a new call database and a name for the caller leg's recording."""
    return testbed.ensure(), f"sqlite:///{tmp}/{name}.db", f"fault-{uuid.uuid4().hex[:10]}"


def calls(db: str) -> list[CallView]:
    """The stored calls, oldest first."""
    with CallStore(db) as store:
        views = [store.get_call(c.id) for c in store.list_calls()]
    return sorted((v for v in views if v is not None), key=lambda v: v.started_at)


def bridged(bed: testbed.AsteriskBed) -> bool:
    return any(len(b["channels"]) == 2 for b in testbed.ari_request(bed, "GET", "/bridges") or [])


def greeted(db: str) -> bool:
    return any(v.turns for v in calls(db))


def leftovers(bed: testbed.AsteriskBed) -> int:
    return sum(ari_leftovers(bed).values())


def place(bed: testbed.AsteriskBed, rec: str, pause_ms: int, *, wait_for_bye: bool) -> asyncio.Task[sipcall.SippResult]:
    return asyncio.ensure_future(asyncio.to_thread(sipcall.place_call, bed.sip_host, bed.sip_port, "agent-ari-rec",
                                                   [sipcall.Pause(pause_ms)], headers={"X-Phoneagent-Rec": rec},
                                                   wait_for_bye=wait_for_bye, timeout=90))


async def caller_on_the_line(bed: testbed.AsteriskBed, db: str, rec: str) -> asyncio.Task[sipcall.SippResult]:
    """A SIP caller who stays 40 s (and waits for our BYE), once bridged and greeted."""
    sip = place(bed, rec, 40000, wait_for_bye=True)
    await until(lambda: bridged(bed) and greeted(db), 30, "the caller bridged and greeted")
    return sip


async def heard(bed: testbed.AsteriskBed, stt: STT, rec: str) -> str:
    got = await asyncio.to_thread(heard_by_caller, bed, rec)
    return "(no recording of the caller's leg)" if got is None else await heard_words(stt, got[1], got[0])


def record_of(row: Row, view: CallView | None) -> None:
    if view is not None:
        row.outcome, row.end_reason, row.turns = view.outcome, view.end_reason, len(view.turns)
        row.events = [e.kind for e in view.events]


async def service_killed(stt: STT, tmp: Path) -> Row:
    row = Row("service-killed", "the service, listening on 127.0.0.2 (not Asterisk's address), SIGKILLed with a SIP caller on the line",
              f"Asterisk hangs the caller up by itself within the lease ({LEASE_S:g} s); no CLOSE-WAIT in Asterisk; "
              "the next start sweeps what is left and closes the record as interrupted")
    bed, db, rec = fresh(tmp, "killed")
    t0 = time.monotonic()
    async with serving(bed, db, host="127.0.0.2", log=tmp / "killed.log") as service:
        proc = service.proc
        sip = await caller_on_the_line(bed, db, rec)
        await asyncio.sleep(1.0)
        proc.kill()
        t_kill = time.monotonic()
        await asyncio.to_thread(proc.wait)
        result = await sip
        freed_after = time.monotonic() - t_kill
    pid = testbed.daemon_pid(bed)
    close_wait = process_sample(pid)["close_wait"] if pid is not None else -1
    before = calls(db)[0].end_reason if calls(db) else "no record"
    async with serving(bed, db, agent="echo", log=tmp / "killed.log"):
        with contextlib.suppress(TimeoutError):  # the sweep and the store's clean-up run at start
            await until(lambda: leftovers(bed) == 0 and calls(db)[0].ended_at is not None, 10, "the clean-up at start")
        left = await asyncio.to_thread(leftovers, bed)
    view = calls(db)[0] if calls(db) else None
    record_of(row, view)
    row.heard = await heard(bed, stt, rec)
    row.agent_hung_up, row.seconds = result.ok, round(time.monotonic() - t0, 1)
    row.extra.update(caller_freed_after_kill_s=round(freed_after, 1), asterisk_close_wait=close_wait,
                     end_reason_before_restart=before, ari_leftovers_after_restart=left)
    row.checks = {
        "caller hung up by Asterisk (SIPp got the BYE)": result.ok,
        f"within the lease + 3 s ({LEASE_S + 3:g} s)": freed_after <= LEASE_S + 3.0,
        "no CLOSE-WAIT in Asterisk": close_wait == 0,
        "record open until the next start": before is None,
        "next start: record interrupted": (row.end_reason, row.outcome) == ("interrupted", "interrupted"),
        "next start: nothing left in Asterisk": left == 0,
    }
    return row


async def network_partition(stt: STT, tmp: Path) -> Row:
    row = Row("network-partition", "the network between the service (on 127.0.0.2) and Asterisk cut mid-call for 25 s: "
              "packets dropped both ways, no FIN, no RST (AudioSocket and ARI)",
              f"Asterisk frees the caller within the lease ({LEASE_S:g} s); the service ends the call as connection_lost within "
              f"its peer timeout ({PEER_TIMEOUT_S:g} s) and finalises the record; once the network is back it reconnects, "
              "nothing is left in Asterisk and the next caller is served")
    bed, db, rec = fresh(tmp, "partition")
    ari_port = urllib.parse.urlsplit(bed.ari_url).port or 8088
    t0 = time.monotonic()
    async with serving(bed, db, host="127.0.0.2", log=tmp / "partition.log") as service:
        sip = await caller_on_the_line(bed, db, rec)
        with dropping(hosts=["127.0.0.2"], ports=[ari_port]):
            t_cut = time.monotonic()
            await until(lambda: calls(db)[0].ended_at is not None, 30, "the service to finalise the cut-off call")
            finalised_after = time.monotonic() - t_cut
            result = await sip
            freed_after = time.monotonic() - t_cut
            ari_during = await service.health()
            await asyncio.sleep(max(0.0, 25.0 - (time.monotonic() - t_cut)))
        t_back = time.monotonic()
        await service.wait_ready(30, "the controller to reconnect to ARI by itself")
        reconnected_after = time.monotonic() - t_back
        with contextlib.suppress(TimeoutError):  # the resync after the reconnect removes the rest
            await until(lambda: leftovers(bed) == 0, 20, "nothing left in Asterisk")
        left = await asyncio.to_thread(leftovers, bed)
        second = await place(bed, f"{rec}-2", 6000, wait_for_bye=False)
    views = calls(db)
    record_of(row, views[0] if views else None)
    row.heard = await heard(bed, stt, rec)
    row.agent_hung_up, row.seconds = result.ok, round(time.monotonic() - t0, 1)
    row.extra.update(record_finalised_after_cut_s=round(finalised_after, 1), caller_freed_after_cut_s=round(freed_after, 1),
                     ari_connected_during_cut=bool(ari_during and ari_during.get("ari")),
                     reconnected_after_network_back_s=round(reconnected_after, 1), ari_leftovers_after=left,
                     records=[(v.end_reason, v.outcome, len(v.turns)) for v in views])
    row.checks = {
        "caller hung up by Asterisk (SIPp got the BYE)": result.ok,
        f"within the lease + 3 s ({LEASE_S + 3:g} s)": freed_after <= LEASE_S + 3.0,
        "record: connection_lost, interrupted": (row.end_reason, row.outcome) == ("connection_lost", "interrupted"),
        f"finalised while cut off, within the peer timeout + 5 s ({PEER_TIMEOUT_S + 5:g} s)": finalised_after <= PEER_TIMEOUT_S + 5.0,
        "nothing left in Asterisk after the network is back": left == 0,
        "next caller served": second.ok and len(views) == 2 and bool(views[1].turns) and views[1].ended_at is not None,
    }
    return row


async def asterisk_restart(stt: STT, tmp: Path) -> Row:
    row = Row("asterisk-restart", "Asterisk stopped (core stop now) with a caller on the line, then started again",
              "the caller's call ends; its record is finalised; the service reconnects by itself and serves the next caller")
    bed, db, rec = fresh(tmp, "restart")
    t0 = time.monotonic()
    async with serving(bed, db, log=tmp / "restart.log") as service:
        proc = service.proc
        sip = await caller_on_the_line(bed, db, rec)
        await asyncio.to_thread(testbed.stop)
        first = await sip
        t_down = time.monotonic()
        bed = await asyncio.to_thread(testbed.start)
        await service.wait_ready(30, "the controller to reconnect to ARI by itself (back-off)")
        reconnected_after = time.monotonic() - t_down
        second = await place(bed, f"{rec}-2", 10000, wait_for_bye=False)
        alive = proc.poll() is None
    views = calls(db)
    record_of(row, views[0] if views else None)
    row.heard = await heard(bed, stt, f"{rec}-2")  # the first leg's recording went down with Asterisk
    row.seconds = round(time.monotonic() - t0, 1)
    row.extra.update(reconnected_after_asterisk_back_s=round(reconnected_after, 1),
                     records=[(v.end_reason, v.outcome, len(v.turns)) for v in views])
    row.checks = {
        "first caller's call ended (BYE)": first.ok,
        "service still running": alive,
        "first record finalised": bool(views) and views[0].ended_at is not None,
        "next caller served": second.ok and len(views) == 2 and bool(views[1].turns),
        "next caller heard the greeting": any(w in row.heard.lower() for w in ("thanks for calling", "help")),
    }
    return row


async def recordings_disk_full(stt: STT, tmp: Path) -> Row:
    row = Row("recordings-disk-full", "Asterisk's recordings directory on a full filesystem (a 256 KiB tmpfs, filled)",
              "the call goes on and ends normally; the record says the recording failed")
    bed, db, rec = fresh(tmp, "disk")
    agents = tmp / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "recorded.yaml").write_text("name: recorded\ninstructions: You help callers.\nrecording: {enabled: true}\n")
    spool = bed.host_path("/var/spool/asterisk/recording")
    spool.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(spool)], check=True)
    t0 = time.monotonic()
    try:
        fill_disk(spool)
        async with serving(bed, db, log=tmp / "disk.log", extra=("--agents", str(agents))):
            result = await place(bed, rec, 9000, wait_for_bye=False)
            await asyncio.sleep(2.0)  # the recording's end event comes after the hang-up
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)
    views = calls(db)
    record_of(row, views[0] if views else None)
    row.heard = await heard(bed, stt, rec)
    row.seconds = round(time.monotonic() - t0, 1)
    failed = [e.detail for e in (views[0].events if views else []) if e.kind == "recording_failed"]
    row.extra.update(recording_failed=failed)
    row.checks = {
        "caller's call ran to its end": result.ok and row.end_reason == "caller_hangup",
        "caller heard the agent": bool(row.heard) and not row.heard.startswith("(no recording"),
        "record: recording_failed": bool(failed),
    }
    return row


async def sigterm_mid_call(stt: STT, tmp: Path) -> Row:
    row = Row("sigterm-mid-call", "SIGTERM to the service (systemd stop, a deploy) with a caller on the line",
              "the service hangs the caller up (BYE), finalises the record (shutdown), leaves nothing in Asterisk, exits 0 within its grace")
    bed, db, rec = fresh(tmp, "term")
    t0 = time.monotonic()
    async with serving(bed, db, log=tmp / "term.log") as service:
        proc = service.proc
        sip = await caller_on_the_line(bed, db, rec)
        proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 30)
        exited_after = time.monotonic() - t_term
        result = await sip
    left = await asyncio.to_thread(leftovers, bed)
    views = calls(db)
    record_of(row, views[0] if views else None)
    row.heard = await heard(bed, stt, rec)
    row.agent_hung_up, row.seconds = result.ok, round(time.monotonic() - t0, 1)
    row.extra.update(exit_code=code, exited_after_s=round(exited_after, 1), ari_leftovers=left)
    row.checks = {
        "caller got the BYE": result.ok, "exit code 0": code == 0, "nothing left in Asterisk": left == 0,
        "record finalised: shutdown, interrupted": bool(views) and views[0].ended_at is not None
        and (row.end_reason, row.outcome) == ("shutdown", "interrupted"),
    }
    return row


def fill_disk(directory: Path) -> None:
    """Leave the filesystem at `directory` with no space at all."""
    fd = os.open(directory / f"filler-{uuid.uuid4().hex[:6]}", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


ROWS: dict[str, Callable[[STT, Path], Awaitable[Row]]] = {
    "service-killed": service_killed,
    "network-partition": network_partition,
    "asterisk-restart": asterisk_restart,
    "recordings-disk-full": recordings_disk_full,
    "sigterm-mid-call": sigterm_mid_call,
}
