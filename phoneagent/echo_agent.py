"""A media-path check agent: greets with tones, echoes the caller, beeps on DTMF
(`phoneagent serve --agent echo`, `python -m devtools demo --agent echo`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from media.pcm import silence, tone
from audiosocket.playout import PlayoutReport
from audiosocket.protocol import Audio, Dtmf
from audiosocket.server import CallEnded, CallSession

log = logging.getLogger(__name__)

GREETING = ((440.0, 200.0), (0.0, 60.0), (660.0, 200.0))  # (Hz, ms); 0 Hz = a gap
DTMF_BEEP_HZ = 1400.0


@dataclass
class CallReport:
    """What the echo agent saw on one call (printed by the demo, asserted by tests)."""

    call_id: str
    sample_rate: int = 0
    frame_ms: float = 0.0
    frames_in: int = 0
    digits: list[str] = field(default_factory=list)
    greeting_played_ms: float = 0.0
    end_reason: str = ""
    caller_audio: bytearray = field(default_factory=bytearray)


class EchoAgent:
    """Handler for AudioSocketServer. Keeps the last `keep` reports for inspection."""

    def __init__(self, *, echo: bool = True, keep: int = 100) -> None:
        self.echo = echo
        self.keep = keep
        self.reports: list[CallReport] = []

    async def __call__(self, session: CallSession) -> None:
        report = CallReport(str(session.call_id))
        self.reports.append(report)
        del self.reports[: -self.keep]
        fmt = await session.media_format()
        report.sample_rate, report.frame_ms = fmt.sample_rate, fmt.frame_ms
        playout = await session.start_playout()
        greeting = b"".join(
            tone(hz, ms, fmt.sample_rate) if hz else silence(ms, fmt.sample_rate) for hz, ms in GREETING
        )
        greeting_done = asyncio.ensure_future(playout.play(greeting))
        try:
            while True:
                item = await session.receive()
                if isinstance(item, CallEnded):
                    report.end_reason = item.reason.value
                    break
                if isinstance(item, Audio):
                    report.frames_in += 1
                    if len(report.caller_audio) < 60 * fmt.sample_rate * 2:  # keep at most a minute
                        report.caller_audio += item.pcm
                    # Echo into one open segment: the pacer drains a frame per period as frames
                    # arrive, so the echo lags by about one frame. Not while greeting.
                    if self.echo and greeting_done.done():
                        playout.capture(item.pcm)
                elif isinstance(item, Dtmf):
                    report.digits.append(item.digit)
                    log.info("call %s: DTMF %s", session.call_id, item.digit)
                    playout.capture(tone(DTMF_BEEP_HZ, 120, fmt.sample_rate))
        finally:
            dropped = playout.clear()  # the greeting comes first if the caller left during it
            greeting_report: PlayoutReport | None = dropped[0] if dropped else None
            if greeting_done.done() and not greeting_done.cancelled():
                greeting_report = greeting_done.result()
            greeting_done.cancel()
            if greeting_report is not None:
                report.greeting_played_ms = greeting_report.played_ms
