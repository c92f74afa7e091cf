"""Answering-machine detection's audio front-end: the callee's first seconds -> `AmdDetector`.

`phoneagent.dialog.amd.rules.AmdDetector` decides from observations stamped in seconds since the answer; this
turns the callee's audio (slin chunks at 8 or 16 kHz, in order, as they arrive) into them:

- speech start/end: silero VAD probabilities with hysteresis. A segment starts at the first
  32 ms window >= `speech_threshold` and ends at the end of its last window >= `release_threshold`
  once the probability has stayed below that for `release_s` (~200 ms, 7 windows). A segment
  voiced for less than `min_speech_s` is a click and never reported.
- beep: a loud, spectrally pure tone in `beep_hz`, steady over a run of 40 ms blocks
  (`tone_block`) at least `beep_min_s` long (the first block may be partly silent), reported
  when the run gets that long, not when the tone ends. A recorded beep can make the VAD fire, so VAD windows that lie mostly in such
  tonal blocks count as silence: a beep never opens, extends or ends a speech segment.
- transcript: the STT runs in a background task on the speech so far, at most `max_stt_runs`
  times before the decision (when a segment ends, and when `stt_after_speech_s` of speech has
  accumulated); its text is observed at the media time it returns. A failed STT is logged and
  the timing rules decide alone.

Time is media time: the seconds of audio received, so nothing here reads a clock and a replayed
call decides exactly as it did live. A speech start or end is only known some windows after the
instant it is stamped with, so the detector is never advanced past an observation that may still
be reported at an earlier time ("the hold"). That delays a timer's report by at most `release_s`,
never its `at_s`, and never past `decide_within_s`: at the deadline the hold is resolved as if the
audio stopped there.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from phoneagent.dialog.amd.rules import AmdConfig, AmdDecision, AmdDetector
from media.clock import Clock, MonotonicClock, wait_for
from media.pcm import SAMPLE_WIDTH, dominant_frequency, rms_dbfs, to_array
from models.base import VAD, Transcript

log = logging.getLogger(__name__)

RATES = (8000, 16000)  # what the silero VAD takes; other rates are resampled by the caller
BLOCK_S = 0.04  # tone analysis block: 25 Hz bins at any rate, 4 blocks make a 150 ms beep
_PURITY_BINS = 3  # a pure tone's energy lies within +-3 bins (+-75 Hz) of its peak (Hann window)


class MachineEngines(Protocol):
    """What AMD needs from the engines (models.engines.Engines provides it)."""

    vad: VAD

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript: ...


@dataclass(frozen=True, slots=True)
class ListenerTuning:
    """Front-end tuning. Defaults suit 32 ms silero windows on G.711 phone audio."""

    speech_threshold: float = 0.5  # a window at or above this starts speech (as the endpointer)
    release_threshold: float = 0.35  # speech goes on while windows stay at or above this
    release_s: float = 0.2  # below release this long ends speech; shorter dips are inside a word
    min_speech_s: float = 0.09  # shorter voiced runs are clicks and line noise (3 windows)
    beep_min_s: float = 0.15  # voicemail beeps last 0.2-1 s; no vowel stays this pure this long
    beep_purity: float = 0.9  # share of a block's energy near its peak: beeps ~1.0, vowels <= ~0.85
    beep_min_dbfs: float = -35.0  # quieter blocks are line noise, never a beep
    beep_tol_hz: float = 25.0  # a steady tone's blocks agree on the frequency within this
    stt_after_speech_s: float = 1.2  # "Hi, you've reached ..." fits, before "long greeting" at 1.8 s
    max_stt_runs: int = 2  # the decision comes within 3 s: more runs would only queue up
    stt_preroll_s: float = 0.3  # audio kept before the first speech (VAD onset is a window late)
    stt_timeout_s: float = 3.0  # an answer later than the whole AMD window is useless

    def __post_init__(self) -> None:
        if not 0.0 < self.release_threshold <= self.speech_threshold <= 1.0:
            raise ValueError(f"need 0 < release_threshold ({self.release_threshold}) <= "
                             f"speech_threshold ({self.speech_threshold}) <= 1")
        if not 0.0 < self.beep_purity <= 1.0:
            raise ValueError(f"beep_purity must be in (0, 1], got {self.beep_purity}")
        for name in ("release_s", "min_speech_s", "beep_min_s", "beep_tol_hz", "stt_after_speech_s", "stt_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0.0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.max_stt_runs < 0 or self.stt_preroll_s < 0.0:
            raise ValueError("max_stt_runs and stt_preroll_s must be >= 0")


def tone_block(pcm: bytes, sample_rate: int, band: tuple[float, float], *, min_dbfs: float, min_purity: float) -> float | None:
    """The frequency of `pcm` if it is one loud, pure tone inside `band`, else None.

    Purity is the share of the (Hann-windowed, mean-removed) energy within +-3 bins of the
    dominant frequency: ~0.99 for a beep through G.711, well under 0.8 for voiced speech,
    whose energy is spread over harmonics and formants.
    """
    if len(pcm) < 32 * SAMPLE_WIDTH or rms_dbfs(pcm) < min_dbfs:
        return None
    hz = dominant_frequency(pcm, sample_rate)
    if not band[0] <= hz <= band[1]:
        return None
    x = to_array(pcm).astype(np.float64)
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size))) ** 2
    total = float(power.sum())
    k = int(round(hz * x.size / sample_rate))
    near = float(power[max(0, k - _PURITY_BINS) : k + _PURITY_BINS + 1].sum())
    return hz if total > 0.0 and near / total >= min_purity else None


class MachineListener:
    """Feeds AmdDetector from the first seconds of an answered outbound call.

    Call `feed()` with each received chunk in order; it returns the decision once, the first
    time it is made. Keep feeding after the decision until `greeting_over()` to leave a message
    after the beep; call `close()` when done (it stops a transcription still in flight).
    """

    def __init__(self, engines: MachineEngines, sample_rate: int, config: AmdConfig | None = None, *,
                 beep_hz: tuple[float, float] = (400.0, 2600.0), tuning: ListenerTuning | None = None,
                 clock: Clock | None = None) -> None:
        """`clock` times out a hung transcription (the call's clock; the real one by default)."""
        if sample_rate not in RATES:
            raise ValueError(f"AMD takes {RATES} Hz audio, not {sample_rate!r}; resample first")
        if not 0.0 < beep_hz[0] < beep_hz[1] < sample_rate / 2:
            raise ValueError(f"beep_hz must be 0 < low < high < {sample_rate / 2:g} Hz, got {beep_hz}")
        self.engines = engines
        self.clock: Clock = clock or MonotonicClock()
        self.sample_rate = sample_rate
        self.config = config or AmdConfig()
        self.tuning = tuning or ListenerTuning()
        self.beep_hz = beep_hz
        self.transcript = ""  # what the STT heard so far (the latest whole transcript)
        self.stt_failures = 0
        self._detector = AmdDetector(self.config)
        self._vad = engines.vad.stream(sample_rate)
        self._unreported: AmdDecision | None = None
        self._samples = 0  # media received; every position below is a sample index from the answer
        # tone analysis, running ahead of the VAD windows it masks
        self._block = int(round(BLOCK_S * sample_rate))
        self._tone_buf = bytearray()
        self._tone_done = 0
        self._tonal: deque[tuple[int, int]] = deque()  # tonal blocks the VAD has not passed yet
        self._run: tuple[int, float] | None = None  # (start, first frequency) of the tonal run
        self._in_beep = False
        self._beep_seen: int | None = None
        self._beep_end: int | None = None
        # VAD windows and the speech segment state
        self._win = self._vad.window_samples
        self._probs: deque[float] = deque()  # windows computed but waiting for the tone analysis
        self._vad_end = 0  # end of the last window applied
        self._seg_start: int | None = None  # the open segment's first voiced window
        self._seg_confirmed = False  # voiced long enough: reported to the detector
        self._last_voiced = 0  # end of the open segment's last window >= release_threshold
        self._segments: list[tuple[int, int]] = []  # closed speech segments
        self._speech_closed = 0  # samples of speech in closed segments
        # observations waiting for the detector to reach their time: (t, seq, kind, text)
        self._obs: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()  # keeps same-instant observations in the order seen
        # STT: audio from the answer, kept only until the decision (at most decide_within_s)
        self._audio = bytearray()
        self._stt_task: asyncio.Task[None] | None = None
        self._stt_runs = 0
        self._stt_wanted = False
        self._stt_long_done = False  # the "enough speech" run was asked for

    # --- public ---
    @property
    def media_s(self) -> float:
        """Seconds of the callee's audio received since the answer."""
        return self._t(self._samples)

    @property
    def decision(self) -> AmdDecision | None:
        return self._detector.decision

    @property
    def beep_seen_at(self) -> float | None:
        """Media time the first beep was recognised (`beep_min_s` into the tone)."""
        return None if self._beep_seen is None else self._t(self._beep_seen)

    @property
    def beep_ended_at(self) -> float | None:
        """Media time the first beep stopped."""
        return None if self._beep_end is None else self._t(self._beep_end)

    @property
    def segments(self) -> list[tuple[float, float]]:
        """The speech segments heard so far (start, end), an open one ending at its last voice."""
        out = [(self._t(a), self._t(b)) for a, b in self._segments]
        if self._seg_start is not None and self._seg_confirmed:
            out.append((self._t(self._seg_start), self._t(self._last_voiced)))
        return out

    async def feed(self, pcm: bytes) -> AmdDecision | None:
        """One received chunk; the decision the first time it is made, else None. Runs the VAD
        and tone analysis inline (well under a ms per chunk) and never waits for the STT."""
        self._advance(pcm)
        return self._report()

    def poll(self, now_s: float | None = None) -> AmdDecision | None:
        """The decision without new audio, once. `now_s`, the caller's seconds since the answer,
        takes audio missing up to then as silence (a muted or unbridged channel sends nothing),
        so the decision still comes by `decide_within_s`. Call it from the event loop (it may
        start the STT task)."""
        if now_s is not None:
            missing = int(now_s * self.sample_rate) - self._samples
            if missing > 0:
                self._advance(bytes(missing * SAMPLE_WIDTH))
        return self._report()

    def greeting_over(self, min_silence_s: float = 1.0) -> bool:
        """Time to speak a message: a beep has ended, or (after a machine decision) speech ended
        and `min_silence_s` of silence followed. Greetings pause between sentences, so keep
        `min_silence_s` well above ~0.5 s; a beep coming later than that is talked over."""
        if self._beep_end is not None:
            return True
        decision = self._detector.decision
        if decision is None or decision.kind != "machine" or self._in_beep:
            return False
        if self._seg_start is not None:
            if not self._seg_confirmed:
                return False  # something is starting: wait until it is noise or speech
            last = self._last_voiced
        elif self._segments:
            last = self._segments[-1][1]
        else:
            return False
        return self._t(self._vad_end - last) >= min_silence_s - 1e-9

    async def wait_stt(self) -> None:
        """Wait for the transcription in flight, if any; its text is observed at the media time
        it returned. For tests and replays: live, `feed()` never waits for the STT."""
        task = self._stt_task
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Stop a transcription still in flight (the call ended, or AMD is no longer needed)."""
        task = self._stt_task
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves, not just the STT

    # --- audio ---
    def _t(self, samples: int) -> float:
        return samples / self.sample_rate

    def _advance(self, pcm: bytes) -> None:
        if len(pcm) % SAMPLE_WIDTH:
            raise ValueError(f"slin audio must have an even number of bytes, got {len(pcm)}")
        self._samples += len(pcm) // SAMPLE_WIDTH
        undecided = self._detector.decision is None
        if undecided and self._stt_runs < self.tuning.max_stt_runs:
            self._audio += pcm
        self._tone_buf += pcm
        self._analyse_tones()
        self._probs.extend(self._vad.process(pcm))
        self._apply_windows()
        if undecided:
            self._drive_detector()
        if self._detector.decision is not None:
            self._audio.clear()  # only the STT needed it
            self._obs.clear()
        else:
            self._maybe_start_stt()

    def _analyse_tones(self) -> None:
        """Classify every complete 40 ms block; track tonal runs into beeps."""
        nbytes = self._block * SAMPLE_WIDTH
        tune = self.tuning
        while len(self._tone_buf) >= nbytes:
            block = bytes(self._tone_buf[:nbytes])
            del self._tone_buf[:nbytes]
            start, end = self._tone_done, self._tone_done + self._block
            self._tone_done = end
            hz = tone_block(block, self.sample_rate, self.beep_hz, min_dbfs=tune.beep_min_dbfs, min_purity=tune.beep_purity)
            if hz is None:
                if self._in_beep and self._beep_end is None:
                    self._beep_end = start
                self._run, self._in_beep = None, False
                continue
            self._tonal.append((start, end))
            if self._in_beep:
                continue  # a two-tone beep goes on until the line is not tonal
            if self._run is None or abs(hz - self._run[1]) > tune.beep_tol_hz:
                self._run = (start, hz)
            if self._t(end - self._run[0]) >= tune.beep_min_s - 1e-9:
                self._in_beep = True
                if self._beep_seen is None:
                    self._beep_seen = end
                self._observe(self._t(end), "beep")

    def _apply_windows(self) -> None:
        """Run the VAD windows the tone analysis has covered through the speech hysteresis."""
        tune = self.tuning
        while self._probs and self._vad_end + self._win <= self._tone_done:
            start, end = self._vad_end, self._vad_end + self._win
            prob = self._probs.popleft()
            if self._tonal_share(start, end) >= 0.5:
                prob = 0.0  # a beep is not speech, whatever the VAD makes of it
            self._vad_end = end
            if self._seg_start is None:
                if prob >= tune.speech_threshold:
                    self._seg_start, self._last_voiced, self._seg_confirmed = start, end, False
                    self._confirm_if_long()
                continue
            if prob >= tune.release_threshold:
                self._last_voiced = end
                self._confirm_if_long()
            elif self._t(end - self._last_voiced) >= tune.release_s - 1e-9:
                self._close_segment()

    def _tonal_share(self, start: int, end: int) -> float:
        """Share of [start, end) that lies in tonal blocks; forgets blocks before `start`."""
        while self._tonal and self._tonal[0][1] <= start:
            self._tonal.popleft()
        covered = sum(max(0, min(end, b) - max(start, a)) for a, b in self._tonal if a < end)
        return covered / (end - start)

    def _confirm_if_long(self) -> None:
        assert self._seg_start is not None
        if not self._seg_confirmed and self._t(self._last_voiced - self._seg_start) >= self.tuning.min_speech_s - 1e-9:
            self._seg_confirmed = True
            self._observe(self._t(self._seg_start), "start")
        if self._seg_confirmed and not self._stt_long_done and self._speech_s() >= self.tuning.stt_after_speech_s:
            self._stt_long_done = self._stt_wanted = True

    def _close_segment(self) -> None:
        assert self._seg_start is not None
        if self._seg_confirmed:
            self._segments.append((self._seg_start, self._last_voiced))
            self._speech_closed += self._last_voiced - self._seg_start
            self._observe(self._t(self._last_voiced), "end")
            self._stt_wanted = True
        self._seg_start, self._seg_confirmed = None, False

    def _speech_s(self) -> float:
        open_ = self._last_voiced - self._seg_start if self._seg_start is not None and self._seg_confirmed else 0
        return self._t(self._speech_closed + open_)

    # --- the detector ---
    def _observe(self, t: float, kind: str, text: str = "") -> None:
        if self._detector.decision is None:
            self._obs.append((t, next(self._seq), kind, text))

    def _drive_detector(self) -> None:
        """Feed the observations up to the hold in time order, then poll there."""
        limit = self._t(self._vad_end)
        if self._seg_start is not None:  # its start (unconfirmed) or end (confirmed) may come
            limit = min(limit, self._t(self._last_voiced if self._seg_confirmed else self._seg_start))
        if self._t(self._samples) >= self.config.decide_within_s:
            # The deadline: decide on what is known, as if the audio stopped here.
            if self._seg_confirmed and self._seg_start is not None and self._last_voiced < self._vad_end:
                self._observe(self._t(self._last_voiced), "end")
            limit = self._t(self._samples)
        self._obs.sort()
        det = self._detector
        while self._obs and self._obs[0][0] <= limit and det.decision is None:
            t, _, kind, text = self._obs.pop(0)
            if kind == "start":
                det.speech_start(t)
            elif kind == "end":
                det.speech_end(t)
            elif kind == "beep":
                det.beep(t)
            else:
                det.transcript(text, t)
        found = det.poll(limit)
        if found is not None:
            self._unreported = found

    def _report(self) -> AmdDecision | None:
        found, self._unreported = self._unreported, None
        return found

    # --- STT ---
    def _maybe_start_stt(self) -> None:
        if not self._stt_wanted or self._stt_task is not None or self._stt_runs >= self.tuning.max_stt_runs:
            return
        first = self._segments[0][0] if self._segments else self._seg_start
        if first is None:
            return
        self._stt_wanted = False
        self._stt_runs += 1
        start = max(0, first - int(self.tuning.stt_preroll_s * self.sample_rate))
        pcm = bytes(self._audio[start * SAMPLE_WIDTH : self._vad_end * SAMPLE_WIDTH])
        self._stt_task = asyncio.get_running_loop().create_task(self._transcribe(pcm), name="amd-stt")

    async def _transcribe(self, pcm: bytes) -> None:
        try:
            result = await wait_for(self.clock, self.engines.transcribe(pcm, self.sample_rate), self.tuning.stt_timeout_s)
        except Exception as exc:  # any engine failure: the timing rules still decide
            self.stt_failures += 1
            log.warning("AMD: STT failed (%s: %s); deciding on timing alone", type(exc).__name__, exc)
            return
        finally:
            self._stt_task = None
        self.transcript = result.text.strip()
        self._observe(self.media_s, "text", result.text)
