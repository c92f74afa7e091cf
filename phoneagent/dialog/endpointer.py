"""Turn-taking from VAD probabilities: when the caller starts, stops, or talks over the agent.

Pure and clock-free: `Endpointer.feed()` takes one VAD window's probability and the END time of
that window (seconds, any origin), and returns the events that window caused. The dialog owns
the clock, so tests replay exact timelines and measured latencies are reproducible.

One speech segment goes through these events (nothing else is emitted):

    SpeechStarted -> SpeechDiscarded | Backchannel          (too short: noise, or "mm-hm")
    SpeechStarted -> SpeechConfirmed [-> BargeIn]
        -> (SpeculativeEndpoint -> SpeculationCancelled)* -> [SpeculativeEndpoint ->] EndOfTurn
    SpeechStarted -> OverlapHeld -> ... -> BargeIn | dismissed (`dismiss()`, no EndOfTurn)

Over the agent, speech between `min_speech_s` and `backchannel_max_s` is held, not yet a
barge-in: the dialog checks its words at the first pause and either `dismiss()`es it (an
acknowledgement, or a wordless sound shorter than `barge_in_min_s`: the agent carries on) or
`confirm()`s the barge-in; speech that reaches `backchannel_max_s` is a barge-in by its length
alone. With `backchannel_max_s <= barge_in_min_s` nothing is held: length alone decides.

Speech end is the end of the last voiced window, so `EndOfTurn.t_decided - t_speech_end` is the
endpointing latency: the configured delay, rounded up to the next window end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

_EPS = 1e-9  # float slack, so 10 windows of 0.05 s count as 0.5 s
_JITTER_S = 1e-6  # a window end this much before the previous one is rounding, not an error


@dataclass(frozen=True, slots=True)
class EndpointerConfig:
    """Per-agent turn-taking tuning. Defaults suit 32 ms silero windows on phone audio."""

    speech_threshold: float = 0.5  # a window at or above this starts speech
    release_threshold: float = 0.35  # speech goes on while windows stay at or above this
    min_speech_s: float = 0.20  # shorter runs are noise, not a turn
    # Silence inside a run too short to be a turn yet that does not end it: the closure of
    # "st-op", the dip in "o-kay". Without it one short word over G.711 splits into two runs
    # that are each too short to count, and "stop" never stops the agent.
    pending_gap_s: float = 0.1
    min_delay_s: float = 0.5  # silence that ends a turn when nothing says more (today's fixed silence)
    max_delay_s: float = 1.2  # silence that ends a turn that sounds unfinished / long-pause mode
    # The end-of-turn model's verdict at a pause (`turn_probability`): at or above
    # `complete_above` the turn ends after `complete_delay_s` of silence; below
    # `incomplete_below` it waits `max_delay_s`; in between, `min_delay_s` as without a model.
    complete_delay_s: float = 0.2
    complete_above: float = 0.8
    incomplete_below: float = 0.2
    max_turn_s: float = 30.0  # endless speech (TV, hold music) is cut into turns this long
    # Silence after which STT, the LLM and the first clause start early (two 32 ms windows). On
    # two cores the reply, not the endpoint, is what a caller waits for, so every ms it starts
    # sooner counts: 0.12 -> 0.064 took the instruct model's V2V p50 at one call down by 126-197 ms
    # (README). A pause this short inside a word only costs the work thrown away.
    speculative_s: float = 0.064
    # Silence after which held speech over the agent is judged by its words. Longer than
    # `speculative_s`: the judgement acts at once, and over G.711 the closure inside "st-op" can
    # last 64 ms, so half a "stop" was judged a wordless sound and the agent carried on.
    check_pause_s: float = 0.12
    barge_in_min_s: float = 0.30  # wordless speech over the agent shorter than this is a backchannel
    backchannel_max_s: float = 1.2  # longer speech over the agent is a barge-in whatever its words
    false_alarm_s: float = 1.0  # a barge-in turn shorter than this may have been a false alarm
    window_s: float = 0.032  # VAD window length; speech starts at the start of its first window

    def __post_init__(self) -> None:
        if not 0.0 <= self.release_threshold <= self.speech_threshold <= 1.0:
            raise ValueError(
                f"need 0 <= release_threshold ({self.release_threshold}) <= "
                f"speech_threshold ({self.speech_threshold}) <= 1"
            )
        if not 0.0 <= self.complete_delay_s <= self.min_delay_s <= self.max_delay_s:
            raise ValueError(f"need 0 <= complete_delay_s ({self.complete_delay_s}) <= min_delay_s ({self.min_delay_s}) "
                             f"<= max_delay_s ({self.max_delay_s})")
        if not 0.0 <= self.incomplete_below <= self.complete_above:
            raise ValueError(f"need 0 <= incomplete_below ({self.incomplete_below}) <= complete_above ({self.complete_above})")
        for name in ("min_speech_s", "pending_gap_s", "max_turn_s", "speculative_s", "check_pause_s", "barge_in_min_s", "backchannel_max_s", "false_alarm_s", "window_s"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """A window crossed the speech threshold; may still turn out to be noise. Keep the audio."""

    t_start: float


@dataclass(frozen=True, slots=True)
class SpeechDiscarded:
    """The speech since SpeechStarted was too short to be a turn (a click, a cough)."""

    t_start: float
    t_end: float


@dataclass(frozen=True, slots=True)
class Backchannel:
    """Short speech while the agent talked ("mm-hm"): the agent keeps talking."""

    t_start: float
    t_end: float


@dataclass(frozen=True, slots=True)
class SpeechConfirmed:
    """The speech lasted long enough to be a turn; an EndOfTurn will follow."""

    t: float


@dataclass(frozen=True, slots=True)
class OverlapHeld:
    """Speech over the agent long enough to interrupt, short enough to be an acknowledgement:
    keep the agent on hold and check the words at the first pause (`Endpointer.dismiss` or
    `Endpointer.confirm`). Speech that goes on past `backchannel_max_s` becomes a BargeIn."""

    t_speech_start: float
    t: float


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The caller talks over the agent: clear playout and cancel generation now."""

    t_speech_start: float
    t_confirmed: float


@dataclass(frozen=True, slots=True)
class SpeculativeEndpoint:
    """A short pause: start STT/LLM early on the audio up to `t_speech_end`, speak nothing yet."""

    t_speech_end: float


@dataclass(frozen=True, slots=True)
class SpeculationCancelled:
    """Speech resumed after a SpeculativeEndpoint: drop the early work."""

    t: float


@dataclass(frozen=True, slots=True)
class EndOfTurn:
    """The caller's turn is over. A speculation on the same `t_speech_end` can be used as is.

    `possible_false_alarm`: the turn interrupted the agent but was shorter than
    `false_alarm_s`; if STT finds no words in it, the dialog may resume the interrupted reply.
    """

    t_speech_start: float
    t_speech_end: float
    t_decided: float
    reason: Literal["silence", "max_turn"]
    barge_in: bool = False
    possible_false_alarm: bool = False
    verdict: Literal["", "complete", "incomplete"] = ""  # the end-of-turn model's, at this pause
    unfinished: bool = False  # the words at this pause sounded unfinished (`Endpointer.hint`)

    @property
    def latency_s(self) -> float:
        """Time from the end of speech to the decision."""
        return self.t_decided - self.t_speech_end


Event: TypeAlias = (
    SpeechStarted | SpeechDiscarded | Backchannel | SpeechConfirmed | OverlapHeld | BargeIn
    | SpeculativeEndpoint | SpeculationCancelled | EndOfTurn
)


class Endpointer:
    """Per-call state machine: idle -> pending (unconfirmed speech) -> turn -> idle."""

    def __init__(self, config: EndpointerConfig | None = None) -> None:
        self.config = config or EndpointerConfig()
        self._long_pause = False
        self.reset()

    def reset(self) -> None:
        """Forget any open segment and the clock (e.g. the media timeline restarted). An open
        speculation is dropped silently; the long-pause mode stays as set."""
        self._state: Literal["idle", "pending", "turn"] = "idle"
        self._voiced = False  # hysteresis state of the last window
        self._t_last: float | None = None
        self._t_start = 0.0  # start of the open segment
        self._t_speech_end = 0.0  # end of its last voiced window
        self._agent_overlap = False  # the agent spoke during the pending run
        self._barge_in = False
        self._held = False  # an OverlapHeld awaits dismiss()/confirm()
        self._speculating = False
        self._likely_complete = True
        self._hint_per_pause = False
        self._verdict: Literal["", "complete", "incomplete"] = ""

    @property
    def held(self) -> bool:
        """Speech over the agent waits for its words to be checked (OverlapHeld was emitted)."""
        return self._held

    def dismiss(self) -> Backchannel | None:
        """The held speech was an acknowledgement: forget it, no EndOfTurn follows. None when
        nothing is held (it already became a barge-in, or the turn ended)."""
        if not self._held or self._state != "turn":
            return None
        event = Backchannel(self._t_start, self._t_speech_end)
        self._state = "idle"
        self._voiced = False
        self._held = False
        self._barge_in = False
        self._speculating = False
        return event

    def confirm(self) -> BargeIn | None:
        """The held speech interrupts the agent; its EndOfTurn follows as for any barge-in."""
        if not self._held:
            return None
        self._held = False
        return BargeIn(self._t_start, self._t_last if self._t_last is not None else self._t_speech_end)

    def hint(self, likely_complete: bool, t_speech_end: float | None = None) -> None:
        """The dialog's guess from the words so far: unfinished ("I want to", "...and") waits up
        to max_delay_s. Applies to the open segment only; ignored when none is open. With
        `t_speech_end` (the words of the audio up to that pause), ignored once speech went on
        past it, and like a model verdict it lasts until speech resumes."""
        if self._state == "idle":
            return
        if t_speech_end is not None and (self._voiced or abs(self._t_speech_end - t_speech_end) > _JITTER_S):
            return
        self._likely_complete = likely_complete
        self._hint_per_pause = t_speech_end is not None

    def turn_probability(self, p: float, t_speech_end: float) -> Literal["", "complete", "incomplete"]:
        """The end-of-turn model's P(complete) for the open turn's audio up to `t_speech_end`.
        Ignored (returns "") when speech went on since that pause or no turn is open."""
        if self._state != "turn" or self._voiced or abs(self._t_speech_end - t_speech_end) > _JITTER_S:
            return ""
        c = self.config
        self._verdict = "complete" if p >= c.complete_above else "incomplete" if p < c.incomplete_below else ""
        return self._verdict

    def set_long_pause(self, enabled: bool) -> None:
        """While enabled every turn waits max_delay_s (e.g. the agent asked for a card number)."""
        self._long_pause = enabled

    @property
    def in_turn(self) -> bool:
        """A confirmed turn is open (the caller holds the floor)."""
        return self._state == "turn"

    @property
    def idle(self) -> bool:
        """No speech run is open: neither a confirmed turn nor speech still too short to be one."""
        return self._state == "idle"

    @property
    def delay_s(self) -> float:
        """Silence that currently ends the open turn."""
        c = self.config
        if self._long_pause or self._verdict == "incomplete" or not self._likely_complete:
            return c.max_delay_s
        return c.complete_delay_s if self._verdict == "complete" else c.min_delay_s

    def feed(self, prob: float, t: float, *, agent_speaking: bool) -> list[Event]:
        """One VAD window (`prob`) ending at `t`. `agent_speaking`: agent audio is playing now."""
        if math.isnan(prob) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"VAD probability must be within [0, 1], got {prob}")
        if self._t_last is not None and t < self._t_last:
            if t < self._t_last - _JITTER_S:
                raise ValueError(f"window end times must not go backwards: {t} after {self._t_last}")
            t = self._t_last  # float rounding in the caller's time arithmetic
        t_prev, self._t_last = self._t_last, t
        c = self.config
        self._voiced = prob >= (c.release_threshold if self._voiced else c.speech_threshold)
        if self._state == "idle":
            return self._idle(t, t_prev, agent_speaking)
        if self._state == "pending":
            return self._pending(t, agent_speaking)
        return self._turn(t)

    def _idle(self, t: float, t_prev: float | None, agent_speaking: bool) -> list[Event]:
        if not self._voiced:
            return []
        self._state = "pending"
        # Speech began with this window, and not before the previous (silent) window ended.
        start = t - self.config.window_s
        self._t_start = start if t_prev is None else max(start, t_prev)
        self._t_speech_end = t
        self._agent_overlap = agent_speaking
        self._barge_in = False
        self._speculating = False
        self._likely_complete, self._hint_per_pause = True, False
        self._verdict = ""
        events: list[Event] = [SpeechStarted(self._t_start)]
        return events + self._pending_check(t, agent_speaking)

    def _pending(self, t: float, agent_speaking: bool) -> list[Event]:
        if not self._voiced:
            if t - self._t_speech_end < self.config.pending_gap_s - _EPS:
                return []  # a gap inside the word; its length counts toward the run
            # The run ended short of a turn: noise, or a backchannel if it overlapped the agent.
            self._state = "idle"
            start, end = self._t_start, self._t_speech_end
            return [Backchannel(start, end) if self._agent_overlap else SpeechDiscarded(start, end)]
        self._t_speech_end = t
        self._agent_overlap = self._agent_overlap or agent_speaking
        return self._pending_check(t, agent_speaking)

    @property
    def holds(self) -> bool:
        """Speech over the agent is held for its words (else barge-in goes by length alone)."""
        c = self.config
        return c.backchannel_max_s > c.barge_in_min_s + _EPS

    def _pending_check(self, t: float, agent_speaking: bool) -> list[Event]:
        c = self.config
        # Held: any speech long enough to be a turn is checked, so a short "no" interrupts.
        needed = c.barge_in_min_s if agent_speaking and not self.holds else c.min_speech_s
        if t - self._t_start < needed - _EPS:
            return []
        self._state = "turn"
        if not agent_speaking:
            return [SpeechConfirmed(t)]
        self._barge_in = True
        if self.holds and t - self._t_start < c.backchannel_max_s - _EPS:
            self._held = True
            return [SpeechConfirmed(t), OverlapHeld(self._t_start, t)]
        return [SpeechConfirmed(t), BargeIn(self._t_start, t)]

    def _turn(self, t: float) -> list[Event]:
        c = self.config
        events: list[Event] = []
        if self._voiced:
            self._t_speech_end = t
            self._verdict = ""  # a verdict is about one pause
            if self._hint_per_pause:  # and so are the words of one pause
                self._likely_complete, self._hint_per_pause = True, False
            if self._speculating:
                self._speculating = False
                events.append(SpeculationCancelled(t))
            if self._held and t - self._t_start >= c.backchannel_max_s - _EPS:
                self._held = False  # too long for an acknowledgement
                events.append(BargeIn(self._t_start, t))
        if t - self._t_start >= c.max_turn_s - _EPS:
            return events + [self._end(t, "max_turn")]
        if self._voiced:
            return events
        silence = t - self._t_speech_end
        if silence >= self.delay_s - _EPS:
            return [self._end(t, "silence")]
        if not self._speculating and silence >= (c.check_pause_s if self._held else c.speculative_s) - _EPS:
            self._speculating = True
            return [SpeculativeEndpoint(self._t_speech_end)]
        return []

    def _end(self, t: float, reason: Literal["silence", "max_turn"]) -> EndOfTurn:
        c = self.config
        short = self._t_speech_end - self._t_start < c.false_alarm_s - _EPS
        event = EndOfTurn(self._t_start, self._t_speech_end, t, reason, self._barge_in, self._barge_in and short, self._verdict,
                          not self._likely_complete)
        self._state = "idle"
        self._held = False
        # After a forced cut, speech that goes on must cross the speech threshold again to
        # open the next turn, like any new turn.
        self._voiced = False
        self._speculating = False
        self._likely_complete, self._hint_per_pause = True, False
        self._verdict = ""
        return event
