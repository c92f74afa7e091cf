"""CallerAudio's buffer, byte by byte: the utterance a reply transcribes starts exactly the
pre-roll before the turn's speech start, whatever the trimming did while the caller was quiet.

The VAD is tests.fakes.LoudnessVAD (loud windows are speech) so that speech starts on a known
window; the same buffer under silero runs in test_session.py and the Asterisk flows."""

from __future__ import annotations

import numpy as np
import pytest

from phoneagent.dialog.endpointer import EndOfTurn, EndpointerConfig, SpeechStarted
from phoneagent.dialog.turns import CallerAudio
from tests.fakes import VOICED, LoudnessVAD

RATE = 8000
PREROLL_S = 0.3


def _stream(lead_in_s: float, speech_s: float, tail_s: float) -> np.ndarray:
    """Quiet samples numbered by position (so a misplaced byte shows), then loud speech."""
    n_lead, n_speech, n_tail = (int(round(s * RATE)) for s in (lead_in_s, speech_s, tail_s))
    quiet = (np.arange(n_lead + n_speech + n_tail) % 1000).astype(np.int16)  # far below VOICED / 2
    quiet[n_lead:n_lead + n_speech] = VOICED
    return quiet


def _feed(audio: CallerAudio, pcm: np.ndarray, chunk: int) -> tuple[list[object], bytes]:
    """All events, and the utterance as the dialog takes it: at EndOfTurn, as it arrives."""
    events: list[object] = []
    heard = b""
    raw = pcm.tobytes()
    for i in range(0, len(raw), chunk * 2):
        for ev in audio.feed(raw[i:i + chunk * 2], lambda: False):
            events.append(ev)
            if isinstance(ev, EndOfTurn):
                heard = audio.utterance(ev.t_speech_end)
                audio.turn_taken()
    return events, heard


@pytest.mark.parametrize("chunk", [160, 320])  # 20 ms at 8 kHz (slin), and 40 ms
@pytest.mark.parametrize("lead_in_s", [round(0.6 + 0.02 * i, 2) for i in range(17)])
def test_the_utterance_keeps_its_whole_preroll_whenever_speech_starts(lead_in_s: float, chunk: int) -> None:
    # Speech starts at every phase of the quiet-time trimming (lead-ins 0.60 .. 0.92 s in
    # 20 ms steps). Trimming while the run was still too short to be a turn (the first
    # min_speech_s) cut its pre-roll to 0.1-0.3 s depending on that phase.
    audio = CallerAudio(LoudnessVAD(), RATE, PREROLL_S, EndpointerConfig())
    pcm = _stream(lead_in_s, 0.5, 0.8)
    events, heard = _feed(audio, pcm, chunk)
    start = next(e for e in events if isinstance(e, SpeechStarted))
    end = next(e for e in events if isinstance(e, EndOfTurn))
    assert start.t_start == pytest.approx(lead_in_s, abs=0.032)  # the first loud window
    first = int((start.t_start - PREROLL_S) * RATE)
    last = int((end.t_speech_end + 0.1) * RATE)
    assert heard == pcm[first:last].tobytes()


def test_quiet_audio_is_trimmed_to_the_preroll() -> None:
    # Long calls: minutes of silence keep a bounded buffer (at most twice pre-roll + a window).
    audio = CallerAudio(LoudnessVAD(), RATE, PREROLL_S, EndpointerConfig())
    pcm = _stream(60.0, 0.0, 0.0)
    assert _feed(audio, pcm, 160) == ([], b"")
    keep = int((PREROLL_S + 0.032) * RATE) * 2
    assert keep <= len(audio._audio) <= 2 * keep
    tail = pcm.tobytes()[-len(audio._audio):]
    assert bytes(audio._audio) == tail
