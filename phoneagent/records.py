"""Call records from the command line: list, show one call with where its turns lost time,
export one (JSON and its recording), purge by retention policy.

    phoneagent calls list [--since 2026-11-30] [--agent support] [--outcome transferred] [--text "order"]
    phoneagent calls show CALL_ID
    phoneagent calls export CALL_ID --out DIR
    phoneagent calls purge --older-than 90 [--dry-run]

Reads the same database as the service (--db or the config file's `db`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from db import CallStore
from db.schema import CallView, TurnTimings

STAGES = (("endpoint", "speech_end_ms", "endpoint_ms"), ("stt", "endpoint_ms", "stt_done_ms"),
          ("llm", "stt_done_ms", "llm_first_token_ms"), ("tts", "llm_first_token_ms", "tts_first_audio_ms"),
          ("wire", "tts_first_audio_ms", "first_frame_ms"))


def stages(t: TurnTimings) -> dict[str, float]:
    """An agent turn's latency by stage (ms), from the caller's last word to the first frame on
    the wire; "v2v" is the whole. Stages the turn did not have (a keypad turn has no STT) are left out."""
    out = {}
    for name, a, b in STAGES:
        start, end = getattr(t, a), getattr(t, b)
        if start is not None and end is not None:
            out[name] = round(end - start, 1)
    if t.speech_end_ms is not None and t.first_frame_ms is not None:
        out["v2v"] = round(t.first_frame_ms - t.speech_end_ms, 1)
    return out


def _when(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if dt is not None else "-"


def call_line(c: CallView) -> str:
    length = f"{(c.ended_at - c.started_at).total_seconds():6.1f} s" if c.ended_at else "   open "
    return f"{c.id}  {_when(c.started_at)}  {length}  {c.direction:8} {c.agent:12} {c.outcome or '-':12} {c.caller or '-'}"


def show(c: CallView) -> str:
    """One call as a reviewer reads it: who, when, how it ended, the transcript with each agent
    turn's latency waterfall, and the events (tool calls, barge-ins, captures, transfer)."""
    ended = f"ended {_when(c.ended_at)} ({c.end_reason}), outcome {c.outcome or '-'}" if c.ended_at else "still open"
    lines = [f"call {c.id}: {c.direction}, from {c.caller or 'unknown'}, agent {c.agent}, media {c.media or '-'}",
             f"started {_when(c.started_at)}, answered {_when(c.answered_at)}, {ended}"]
    if c.recording_path:
        lines.append(f"recording {c.recording_path} ({c.recording_s or 0:.1f} s)")
    if c.summary:
        lines.append(f"summary for the person who took it: {c.summary}")
    lines.append("")
    lines.append("   at s  who     text")
    for turn in c.turns:
        at = turn.timings.first_frame_ms if turn.role == "agent" else turn.timings.speech_end_ms
        when = f"{at / 1000:7.1f}" if at is not None else "      -"
        mark = " [cut off]" if turn.interrupted else ""
        lines.append(f"{when}  {turn.role:6}  {turn.text}{mark}")
        took = stages(turn.timings) if turn.role == "agent" else {}
        if took:
            lines.append("                 " + "  ".join(f"{k} {v:.0f} ms" for k, v in took.items()))
    if c.events:
        lines.append("")
        lines.append("events:")
        for e in c.events:
            detail = json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else ""
            lines.append(f"{e.t_ms / 1000:7.1f}  {e.kind:20} {detail}")
    return "\n".join(lines)


def as_json(c: CallView) -> dict[str, Any]:
    """The call, turns with timings and waterfall, and events, as plain JSON types."""
    data = dataclasses.asdict(c)
    for key in ("started_at", "answered_at", "ended_at"):
        value = getattr(c, key)
        data[key] = value.isoformat() if value is not None else None
    for turn, view in zip(data["turns"], c.turns):
        turn["created_at"] = view.created_at.isoformat()
        if view.role == "agent":
            turn["waterfall_ms"] = stages(view.timings)
    return data


def export(c: CallView, out: Path) -> list[Path]:
    """`out`/<id>.json, and the recording beside it when the file is there."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{c.id}.json"]
    written[0].write_text(json.dumps(as_json(c), ensure_ascii=False, indent=2) + "\n")
    if c.recording_path and Path(c.recording_path).is_file():
        audio = out / f"{c.id}{Path(c.recording_path).suffix}"
        shutil.copyfile(c.recording_path, audio)
        written.append(audio)
    return written


def purge(store: CallStore, older_than_days: float, *, now: datetime, dry_run: bool = False) -> list[CallView]:
    """Delete calls that started more than `older_than_days` ago, with their turns, events and
    recording files (a data-protection retention rule). Returns what was (or would be) deleted."""
    if not older_than_days > 0:
        raise ValueError(f"--older-than must be a number of days > 0, got {older_than_days}")
    cutoff = now - timedelta(days=older_than_days)
    if dry_run:
        return store.list_calls(limit=10**9, before=cutoff)
    doomed: list[CallView] = []
    while batch := store.list_calls(limit=500, before=cutoff):
        for c in batch:
            if c.recording_path:  # the audio first: if the record then failed to go, the next purge finds it again
                Path(c.recording_path).unlink(missing_ok=True)
            store.delete_call(c.id)
        doomed += batch
    return doomed


def _day(text: str) -> datetime:
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: write 2026-11-30 or 2026-11-30T14:00") from None
    return day if day.tzinfo else day.replace(tzinfo=UTC)


def run(args: argparse.Namespace, db_url: str) -> int:
    with CallStore(db_url) as store:
        if args.calls_command == "list":
            calls = store.list_calls(limit=args.limit, since=_day(args.since) if args.since else None,
                                     before=_day(args.before) if args.before else None, agent=args.agent,
                                     outcome=args.outcome, text=args.text)
            if args.json:
                print(json.dumps([as_json(c) for c in calls], ensure_ascii=False, indent=2))
            else:
                print("\n".join(call_line(c) for c in calls) if calls else "no calls")
            return 0
        if args.calls_command in ("show", "export"):
            call = store.get_call(args.call_id)
            if call is None:
                raise ValueError(f"no call {args.call_id} in {db_url}")
            if args.calls_command == "export":
                for path in export(call, Path(args.out)):
                    print(path)
            else:
                print(json.dumps(as_json(call), ensure_ascii=False, indent=2) if args.json else show(call))
            return 0
        gone = purge(store, args.older_than, now=datetime.now(UTC), dry_run=args.dry_run)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {len(gone)} call(s) started before {_when(datetime.now(UTC) - timedelta(days=args.older_than))}, "
              f"{sum(1 for c in gone if c.recording_path)} with a recording")
        return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser("calls", help="call records: list, show, export, purge (the service's database)")
    sub = p.add_subparsers(dest="calls_command", required=True)
    lst = sub.add_parser("list", help="newest first")
    lst.add_argument("--since", help="started on or after (2026-11-30 or 2026-11-30T14:00, UTC unless given)")
    lst.add_argument("--before", help="started before")
    lst.add_argument("--agent")
    lst.add_argument("--outcome", help="completed, transferred, no_input, voicemail, error, interrupted...")
    lst.add_argument("--text", help="a turn contains this (any case)")
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--json", action="store_true")
    shw = sub.add_parser("show", help="one call: transcript, per-turn latency, events")
    shw.add_argument("call_id")
    shw.add_argument("--json", action="store_true")
    exp = sub.add_parser("export", help="one call as JSON, with its recording, into a directory")
    exp.add_argument("call_id")
    exp.add_argument("--out", required=True)
    prg = sub.add_parser("purge", help="delete calls (and recordings) older than N days")
    prg.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    prg.add_argument("--dry-run", action="store_true", help="only count them")
    for q in (lst, shw, exp, prg):
        q.add_argument("--config", help="service config file (its db)")
        q.add_argument("--db", help="SQLAlchemy URL (default: the config's, else sqlite:///phoneagent.db)")
    return p
