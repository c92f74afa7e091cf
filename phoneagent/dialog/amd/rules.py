"""Answering-machine detection (AMD) for outbound calls, decided within seconds of the answer.

Pure and clock-free: the outbound flow feeds what it observed, stamped in seconds since the
answer (VAD speech start/end, the partial STT transcript so far, a tone detector's beep), and
calls poll(now). A human must not wait long in silence for us, so a decision always comes by
`decide_within_s`.

Cues (the timer rules, from "long greeting" on, win a tie at one instant in this order):

    machine  "beep"                          a voicemail beep, decided when fed
    machine  "phrase: <phrase>"              the transcript holds a voicemail phrase, when fed
    machine  "long greeting"                 one greeting runs past long_greeting_s
    machine  "total speech"                  speech adds up past max_human_speech_s
    human    "short greeting then silence"   "Hello?", then waiting for us
    human    "no machine cue"                at decide_within_s, after some speech
    unknown  "silence"                       at decide_within_s, nothing heard

A greeting is speech whose pauses are all shorter than word_gap_s. `AmdDecision.at_s` is the
call time the cue happened, not the time of the poll that reported it, and the decision does
not depend on how often poll() is called: every call first settles the timers due up to its
own time (deadline included), then applies its observation. So timers beat an observation at
the same instant, and observations after decide_within_s never change the outcome.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

_EPS = 1e-9  # float slack, so 0.3 + 1.8 counts as due at 2.1

Kind: TypeAlias = Literal["human", "machine", "unknown"]

VOICEMAIL_PHRASES: tuple[str, ...] = (
    "leave a message", "leave your message", "not available", "can't take your call",
    "cannot take your call", "unable to take your call", "after the tone", "after the beep",
    "voicemail", "voice mail", "mailbox", "you have reached", "you've reached",
    "record your message", "at the tone",
)


def normalize_words(text: str) -> str:
    """Lower-case words joined by single spaces, apostrophes dropped ("Can’t!" -> "cant"), so
    phrases match whatever punctuation and casing the STT produces."""
    text = text.lower().replace("\u2019", "").replace("'", "")
    return " ".join(re.findall(r"\w+", text))


@dataclass(frozen=True, slots=True)
class AmdConfig:
    """AMD tuning. Defaults suit phone audio with a VAD that reports word-level speech."""

    decide_within_s: float = 3.0  # a human hears silence until we decide; longer feels like a dead line
    word_gap_s: float = 0.35  # pauses between words are shorter; a sentence pause splits greetings
    long_greeting_s: float = 1.8  # people answer in about a second; recorded greetings run on
    max_human_speech_s: float = 2.2  # humans stop to let us talk; recordings keep going across pauses
    human_max_greeting_s: float = 1.5  # "Hello?", "Yes, Anna speaking?" fit in this
    silence_after_greeting_s: float = 0.7  # a human then waits for us; a recording starts its next sentence
    voicemail_phrases: tuple[str, ...] = VOICEMAIL_PHRASES  # matched on whole normalised words

    def __post_init__(self) -> None:
        for name in ("decide_within_s", "word_gap_s", "long_greeting_s", "max_human_speech_s",
                     "human_max_greeting_s", "silence_after_greeting_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0.0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.human_max_greeting_s > self.long_greeting_s:
            raise ValueError(f"human_max_greeting_s ({self.human_max_greeting_s}) must be <= "
                             f"long_greeting_s ({self.long_greeting_s})")
        if self.silence_after_greeting_s <= self.word_gap_s:
            raise ValueError(f"silence_after_greeting_s ({self.silence_after_greeting_s}) must be > "
                             f"word_gap_s ({self.word_gap_s}): a pause between words is not the end")
        if isinstance(self.voicemail_phrases, str):
            raise ValueError("voicemail_phrases must be a tuple of phrases, not one string")
        for phrase in self.voicemail_phrases:
            if not isinstance(phrase, str) or not normalize_words(phrase):
                raise ValueError(f"voicemail phrase {phrase!r} has no words")


@dataclass(frozen=True, slots=True)
class AmdDecision:
    """Who answered. `at_s`: seconds since the answer when the deciding cue happened."""

    kind: Kind
    reason: str
    at_s: float


class AmdDetector:
    """One outbound call's detector: feed observations in time order, poll until decided."""

    def __init__(self, config: AmdConfig | None = None) -> None:
        self.config = config or AmdConfig()
        self._phrases = tuple((p, f" {normalize_words(p)} ") for p in self.config.voicemail_phrases)
        self._clock = 0.0  # latest time seen
        self._t_state = 0.0  # when the speech state last changed: no timer fires before it
        self._decision: AmdDecision | None = None
        self._reported = False
        self._heard = False  # any speech or words at all
        self._open_start: float | None = None  # start of the open VAD speech segment
        self._greeting_start = 0.0  # start of the current (or last) greeting
        self._last_end: float | None = None  # end of the last segment while none is open
        self._speech_total = 0.0  # closed speech so far

    @property
    def decision(self) -> AmdDecision | None:
        """The decision once made (by any call), whether or not poll() has reported it yet."""
        return self._decision

    def speech_start(self, t: float) -> None:
        """The VAD heard speech start at `t`."""
        self._check_time(t)
        if self._decision is None and self._open_start is not None:
            raise ValueError(f"speech_start at {t}: speech already started at {self._open_start}")
        if self._settle(t):
            return
        self._heard = True
        if self._last_end is None or t - self._last_end >= self.config.word_gap_s:
            self._greeting_start = t
        self._open_start, self._last_end, self._t_state = t, None, t
        self._settle(t)

    def speech_end(self, t: float) -> None:
        """The VAD heard the open speech end at `t`."""
        self._check_time(t)
        if self._decision is None and self._open_start is None:
            raise ValueError(f"speech_end at {t} without speech_start")
        if self._settle(t) or self._open_start is None:
            return
        self._speech_total += t - self._open_start
        self._open_start, self._last_end, self._t_state = None, t, t
        self._settle(t)

    def transcript(self, text: str, t: float) -> None:
        """The whole partial transcript so far (not just the newest words), as of `t`."""
        if not isinstance(text, str):
            raise ValueError(f"transcript must be a string, got {type(text).__name__}")
        self._check_time(t)
        if self._settle(t):
            return
        words = f" {normalize_words(text)} "
        self._heard = self._heard or bool(words.strip())
        for phrase, norm in self._phrases:
            if norm in words:
                self._decide("machine", f"phrase: {phrase}", t)
                return

    def beep(self, t: float) -> None:
        """A voicemail beep ended or was detected at `t`."""
        self._check_time(t)
        if not self._settle(t):
            self._decide("machine", "beep", t)

    def poll(self, now: float) -> AmdDecision | None:
        """The decision, once: at the first call where it is made; None before and after.
        Always decided when now >= decide_within_s."""
        self._check_time(now)
        self._settle(now)
        if self._decision is None or self._reported:
            return None
        self._reported = True
        return self._decision

    def _check_time(self, t: float) -> None:
        if not math.isfinite(t) or t < 0.0:
            raise ValueError(f"time since answer must be a finite number >= 0, got {t}")
        if t < self._clock:
            raise ValueError(f"time must not go backwards: {t} after {self._clock}")
        self._clock = t

    def _decide(self, kind: Kind, reason: str, at_s: float) -> None:
        self._decision = AmdDecision(kind=kind, reason=reason, at_s=at_s)

    def _settle(self, t: float) -> bool:
        """Fire the earliest timer due by `t`, if any. True once decided."""
        if self._decision is not None:
            return True
        c = self.config
        timers: list[tuple[float, Kind, str]] = []  # in tie-break order
        if self._open_start is not None:
            timers.append((self._greeting_start + c.long_greeting_s, "machine", "long greeting"))
            left = c.max_human_speech_s - self._speech_total  # speech still allowed to a human
            timers.append((self._open_start + left, "machine", "total speech"))
        elif self._last_end is not None and self._last_end - self._greeting_start <= c.human_max_greeting_s + _EPS:
            timers.append((self._last_end + c.silence_after_greeting_s, "human", "short greeting then silence"))
        if self._heard:
            timers.append((c.decide_within_s, "human", "no machine cue"))
        else:
            timers.append((c.decide_within_s, "unknown", "silence"))
        # A greeting resumed after a short pause may already be past long_greeting_s: it fires
        # when the state that armed it began, never earlier.
        due = [(max(at, self._t_state), kind, reason) for at, kind, reason in timers]
        first = min(at for at, _, _ in due)
        if first > t + _EPS:
            return False
        at, kind, reason = next(d for d in due if d[0] <= first + _EPS)
        self._decide(kind, reason, min(at, c.decide_within_s))
        return True
