"""The console's HTML, rendered on the server from call views: no template engine, every value
escaped, no inline script or style (the pages are served with a strict Content-Security-Policy),
every asset from /console/static."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from html import escape
from urllib.parse import urlencode

from db.schema import CallView, Overview, TurnView
from phoneagent.records import STAGES

BASE = "/console"
WATERFALL_MS = 3000.0  # full width of a waterfall bar; slower turns run off the end (and say so)
WATERFALL_PX = 360


def _when(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if dt is not None else "–"


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, csrf: str = "", nav: bool = True) -> str:
    menu = ""
    if nav:
        menu = (f'<header><nav><a href="{BASE}/">Calls</a> <a href="{BASE}/live">Live</a> <a href="{BASE}/overview">Overview</a>'
                f'<form method="post" action="{BASE}/logout" class="logout"><input type="hidden" name="csrf" value="{_e(csrf)}">'
                '<button>Log out</button></form></nav></header>')
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width"><meta name="csrf" content="{_e(csrf)}">'
            f'<title>{_e(title)} · phone agent</title><link rel="stylesheet" href="{BASE}/static/console.css">'
            f'<script src="{BASE}/static/console.js" defer></script></head>'
            f'<body>{menu}<main><h1>{_e(title)}</h1>{body}</main></body></html>')


def login(csrf: str, error: str = "") -> str:
    problem = f'<p class="error">{_e(error)}</p>' if error else ""
    return page("Log in", f'{problem}<form method="post" action="{BASE}/login" class="login">'
                f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
                '<label>Console token <input type="password" name="token" autocomplete="current-password" autofocus></label>'
                '<button>Log in</button></form>', nav=False)


FILTERS = (("since", "date", "From"), ("before", "date", "Before"), ("agent", "text", "Agent"), ("outcome", "text", "Outcome"),
           ("amd", "text", "AMD"), ("text", "search", "Said"))


def call_list(calls: Iterable[CallView], query: Mapping[str, str], csrf: str, error: str = "") -> str:
    fields = "".join(f'<label>{label} <input type="{kind}" name="{name}" value="{_e(query.get(name, ""))}"></label>'
                     for name, kind, label in FILTERS)
    checked = " checked" if query.get("transferred") else ""
    form = (f'<form method="get" action="{BASE}/" class="filters">{fields}'
            f'<label><input type="checkbox" name="transferred" value="1"{checked}> transferred</label><button>Filter</button></form>')
    rows = []
    for c in calls:
        length = f"{(c.ended_at - c.started_at).total_seconds():.0f} s" if c.ended_at else "open"
        rows.append(f'<tr><td><a href="{BASE}/calls/{_e(c.id)}">{_when(c.started_at)}</a></td><td>{length}</td>'
                    f'<td>{_e(c.direction)}</td><td>{_e(c.caller or "–")}</td><td>{_e(c.agent)}</td><td>{_e(c.outcome or "–")}</td>'
                    f'<td>{_e(c.disposition or "")}</td><td>{_e(c.amd_result or "")}</td><td>{"▶" if c.recording_path else ""}</td></tr>')
    table = ('<table class="calls"><thead><tr><th>Started (UTC)</th><th>Length</th><th>Direction</th><th>Caller</th><th>Agent</th>'
             '<th>Outcome</th><th>Why</th><th>AMD</th><th>Rec</th></tr></thead><tbody>'
             + ("".join(rows) or '<tr><td colspan="9">No calls match.</td></tr>') + "</tbody></table>")
    problem = f'<p class="error">{_e(error)}</p>' if error else ""
    return page("Calls", problem + form + table, csrf=csrf)


MILESTONES = tuple((name, done) for name, _, done in STAGES)  # each stage by the field that says it was done


def waterfall(turn: TurnView) -> str:
    """An agent turn as an SVG bar (SVG: the CSP forbids inline styles) of when each stage was
    done after the caller's last word: the endpoint decided, the transcript, the first token, the
    first audio, the first frame on the wire (= V2V). Sorted by time, so work started early
    (speculation: the transcript before the endpoint) shows where it really happened."""
    t = turn.timings
    if t.speech_end_ms is None:
        return ""
    done = sorted((ms - t.speech_end_ms, name) for name, field in MILESTONES if (ms := getattr(t, field)) is not None)
    if not done:
        return ""
    scale, parts, x = WATERFALL_PX / WATERFALL_MS, [], 0.0
    for after, name in done:
        end = min(max(after, 0.0) * scale, WATERFALL_PX)
        if end > x:
            parts.append(f'<rect class="stage-{name}" x="{x:.1f}" y="2" width="{end - x:.1f}" height="14">'
                         f'<title>{name} done {after:.0f} ms after the last word</title></rect>')
            x = end
    v2v = t.first_frame_ms - t.speech_end_ms if t.first_frame_ms is not None else None
    label = f"V2V {v2v:.0f} ms" if v2v is not None else ""
    legend = " · ".join(f"{name} +{after:.0f}" for after, name in done)
    return (f'<div class="waterfall"><svg width="{WATERFALL_PX + 4}" height="18" role="img" aria-label="{_e(legend)}">'
            f'{"".join(parts)}</svg> <span class="v2v">{_e(label)}</span> <small>{_e(legend)} ms after the last word</small></div>')


def _turn_at_ms(turn: TurnView) -> float | None:
    return turn.timings.first_frame_ms if turn.role == "agent" else turn.timings.speech_end_ms


def call_page(c: CallView, csrf: str) -> str:
    facts = [("Direction", c.direction), ("Caller", c.caller), ("Called", c.callee), ("Agent", c.agent),
             ("Started", _when(c.started_at)), ("Answered", _when(c.answered_at) if c.answered_at else None),
             ("Ended", f"{_when(c.ended_at)} ({c.end_reason})" if c.ended_at else "in progress"),
             ("Outcome", c.outcome), ("Why", c.disposition), ("Transferred to", c.transfer_target), ("AMD", c.amd_result)]
    dl = "".join(f"<dt>{k}</dt><dd>{_e(v)}</dd>" for k, v in facts if v)
    player = ""
    if c.recording_path:
        player = (f'<audio id="player" controls preload="metadata" src="{BASE}/calls/{_e(c.id)}/recording"></audio>'
                  f'<p class="hint">{c.recording_s or 0:.1f} s; the turn being played is highlighted.</p>')
    items = []
    for t in c.turns:
        at = _turn_at_ms(t)
        stamp = f"{at / 1000:7.1f} s" if at is not None else "–"
        data_at = f' data-at="{at / 1000:.2f}"' if at is not None else ""
        cut = ' <span class="cut">cut off</span>' if t.interrupted else ""
        whole = f'<p class="unheard">Would have said: {_e(t.full_text)}</p>' if t.full_text and t.full_text != t.text else ""
        conf = f' <small>confidence {t.stt_confidence:.2f}</small>' if t.stt_confidence is not None else ""
        items.append(f'<li class="turn role-{_e(t.role)}"{data_at}><time>{stamp}</time> <b>{_e(t.role)}</b> '
                     f'<span class="text">{_e(t.text)}</span>{cut}{conf}{whole}{waterfall(t) if t.role == "agent" else ""}</li>')
    events = "".join(
        f'<tr class="event-{_e(e.kind)}"><td>{e.t_ms / 1000:.1f}</td><td>{_e(e.kind)}</td>'
        f'<td><code>{_e(json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else "")}</code></td></tr>'
        for e in c.events)
    summary = f'<h2>Summary given on transfer</h2><blockquote class="summary">{_e(c.summary)}</blockquote>' if c.summary else ""
    body = (f'<dl class="facts">{dl}</dl>{player}{summary}<h2>Transcript</h2><ol class="transcript">{"".join(items)}</ol>'
            f'<h2>Events</h2><table class="events"><thead><tr><th>s</th><th>Kind</th><th>Detail</th></tr></thead>'
            f'<tbody>{events or "<tr><td colspan=3>None.</td></tr>"}</tbody></table>'
            f'<p><a href="{BASE}/calls/{_e(c.id)}.json">JSON</a></p>')
    return page(f"Call from {c.caller or 'unknown'} at {_when(c.started_at)}", body, csrf=csrf)


def live(csrf: str) -> str:
    return page("Calls in progress", '<p class="hint" id="live-status">Connecting…</p><div id="live"></div>', csrf=csrf)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def overview(o: Overview, now: datetime, days: int, csrf: str) -> str:
    day_start = now - timedelta(hours=24)
    hours = Counter(int((t - day_start).total_seconds() // 3600) for t, _, _ in o.calls if t >= day_start)
    top = max(hours.values(), default=0) or 1
    bars = "".join(f'<rect class="bar" x="{h * 20}" y="{100 - 85 * n / top:.1f}" width="16" height="{85 * n / top:.1f}">'
                   f'<title>{(day_start + timedelta(hours=h)).strftime("%H:00")}: {n} calls</title></rect>'
                   f'<text class="count" x="{h * 20 + 8}" y="{96 - 85 * n / top:.1f}">{n}</text>'
                   for h, n in sorted(hours.items()) if 0 <= h < 24)
    bars += '<line class="axis" x1="0" y1="100.5" x2="480" y2="100.5"></line>' + "".join(
        f'<text class="tick" x="{h * 20}" y="116">{(day_start + timedelta(hours=h)).strftime("%H:00")}</text>' for h in (0, 6, 12, 18))
    outcomes = Counter(outcome or "open" for _, outcome, _ in o.calls)
    why = Counter(d for _, outcome, d in o.calls if d and outcome == "transferred")
    by_day: dict[str, list[float]] = {}
    for t, ms in o.v2v_ms:
        by_day.setdefault(t.astimezone(UTC).strftime("%Y-%m-%d"), []).append(ms)
    v2v_rows = "".join(f"<tr><td>{d}</td><td>{len(v)}</td><td>{percentile(v, 50):.0f}</td><td>{percentile(v, 95):.0f}</td></tr>"
                       for d, v in sorted(by_day.items()))
    body = (f'<p class="hint">The last {days} days: {len(o.calls)} calls. '
            f'<a href="{BASE}/overview?{urlencode({"days": 1})}">1 day</a> · <a href="{BASE}/overview?days=7">7</a> · '
            f'<a href="{BASE}/overview?days=30">30</a></p>'
            f'<h2>Calls per hour, last 24 h (UTC)</h2><svg class="hours" width="490" height="120" role="img" '
            f'aria-label="calls per hour">{bars}</svg>'
            '<h2>Outcomes</h2><table class="outcomes"><tbody>'
            + "".join(f"<tr><td>{_e(k)}</td><td>{n}</td></tr>" for k, n in outcomes.most_common())
            + '</tbody></table><h2>Voice-to-voice per day (ms, agent turns)</h2><table class="v2v"><thead><tr><th>Day</th><th>Turns</th>'
            f'<th>p50</th><th>p95</th></tr></thead><tbody>{v2v_rows or "<tr><td colspan=4>No turns.</td></tr>"}</tbody></table>'
            '<h2>Transfers and why</h2><table class="why"><tbody>'
            + ("".join(f"<tr><td>{_e(k)}</td><td>{n}</td></tr>" for k, n in why.most_common()) or "<tr><td>None.</td></tr>")
            + "</tbody></table>")
    return page("Overview", body, csrf=csrf)
