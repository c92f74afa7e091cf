"""DTMF: single key presses -> entries, and one report per key press.

Pure and clock-free: every call takes `now`, seconds on one monotonic clock (any origin), which
must not go backwards. The call flow owns the clock and the timers; it calls
`DigitCollector.poll()` at `deadline`, so tests replay exact timelines.

- `DigitCollector` ends an entry on the terminator key, after an inter-digit timeout, or at
  max_digits, and flags the escape entry ("0" alone = ask for a human).
- `DtmfDeduper` drops the second report of one key press: the same press arrives as an ARI
  ChannelDtmfReceived on the caller's channel and as an AudioSocket DTMF frame via the bridge.
- `FloodGuard` drops presses that come faster than any keypad sends them (a stuck key, a fax
  or modem heard as DTMF, an attack) until they stop: a flood must not become a turn per entry.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

DTMF_DIGITS: Final = "0123456789*#ABCD"


def normalize_digit(digit: str) -> str:
    """One key press as stored (A-D upper-case). Garbage raises here, where it enters, rather
    than surfacing later as a wrong account number."""
    if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise ValueError(f"invalid DTMF digit {digit!r}: expected one of 0-9, *, #, A-D")
    return digit.upper()


def _check_time(now: float, last: float | None) -> float:
    if not math.isfinite(now):
        raise ValueError(f"time must be a finite number, got {now}")
    if last is not None and now < last:
        raise ValueError(f"time must not go backwards: {now} after {last}")
    return now


@dataclass(frozen=True, slots=True)
class DigitConfig:
    """How one prompt collects digits. Digits are normalised to upper case on construction."""

    terminator: str | None = "#"  # ends the entry at once; None: only timeout or max_digits end it
    inter_digit_timeout_s: float = 3.0  # a caller who stops pressing this long is done
    max_digits: int = 20  # the entry ends at once when this long: no need to wait for # or timeout
    escape: str | None = "0"  # an entry of exactly these digits asks for a human; None: no escape

    def __post_init__(self) -> None:
        if not math.isfinite(self.inter_digit_timeout_s) or self.inter_digit_timeout_s <= 0.0:
            raise ValueError(f"inter_digit_timeout_s must be > 0, got {self.inter_digit_timeout_s}")
        if isinstance(self.max_digits, bool) or not isinstance(self.max_digits, int) or self.max_digits < 1:
            raise ValueError(f"max_digits must be an int >= 1, got {self.max_digits!r}")
        if self.terminator is not None:
            object.__setattr__(self, "terminator", _config_digits("terminator", self.terminator, one=True))
        if self.escape is not None:
            escape = _config_digits("escape", self.escape, one=False)
            if self.terminator is not None and self.terminator in escape:
                raise ValueError(f"escape {escape!r} must not contain the terminator {self.terminator!r}")
            if len(escape) > self.max_digits:
                raise ValueError(f"escape {escape!r} is longer than max_digits ({self.max_digits})")
            object.__setattr__(self, "escape", escape)


def _config_digits(name: str, value: str, *, one: bool) -> str:
    if not isinstance(value, str) or not value or (one and len(value) != 1):
        raise ValueError(f"{name} must be {'one DTMF digit' if one else 'a non-empty string of DTMF digits'}, "
                         f"got {value!r}")
    try:
        return "".join(normalize_digit(ch) for ch in value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


@dataclass(frozen=True, slots=True)
class DigitEntry:
    """One completed entry.

    `digits` excludes the terminator and may be "" (the terminator pressed on its own: the
    caller skips the question or accepts a default; the flow decides). `t_first`/`t_last` are
    the first and last key press of the entry, the terminator included.
    """

    digits: str
    ended_by: Literal["terminator", "timeout", "max_digits"]
    escape: bool
    t_first: float
    t_last: float


class DigitCollector:
    """Collects key presses into entries for one prompt after another.

    A terminator pressed as the very next key after an entry that ended at max_digits (and
    within the inter-digit timeout) is swallowed: callers add "#" to a full PIN out of habit,
    and that must not become a second, empty entry.
    """

    def __init__(self, config: DigitConfig | None = None) -> None:
        self.config = config or DigitConfig()
        self._clock: float | None = None
        self._digits: list[str] = []
        self._t_first = 0.0
        self._t_last = 0.0
        self._swallow_until: float | None = None

    @property
    def pending(self) -> str:
        """Digits of the open entry so far."""
        return "".join(self._digits)

    @property
    def deadline(self) -> float | None:
        """When the open entry times out (call poll() then); None while nothing is pending."""
        return self._t_last + self.config.inter_digit_timeout_s if self._digits else None

    def clear(self) -> None:
        """Drop the open entry (e.g. a new prompt starts). The clock check carries on."""
        self._digits = []
        self._swallow_until = None

    def feed(self, digit: str, now: float) -> list[DigitEntry]:
        """One key press at `now`. Returns the entries it completed: none, one, or two when the
        open entry had already timed out before this press (poll() was not called in time)."""
        d = normalize_digit(digit)
        self._clock = _check_time(now, self._clock)
        out = self._expire(now)
        swallow = self._swallow_until is not None and now < self._swallow_until
        self._swallow_until = None
        if d == self.config.terminator:
            if not swallow:
                out.append(self._finish("terminator", now))
            return out
        if not self._digits:
            self._t_first = now
        self._digits.append(d)
        self._t_last = now
        if len(self._digits) >= self.config.max_digits:
            out.append(self._finish("max_digits", now))
            self._swallow_until = now + self.config.inter_digit_timeout_s
        return out

    def poll(self, now: float) -> list[DigitEntry]:
        """The open entry if its inter-digit timeout has passed at `now`, else nothing."""
        self._clock = _check_time(now, self._clock)
        return self._expire(now)

    def _expire(self, now: float) -> list[DigitEntry]:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        return [self._finish("timeout", self._t_last)]

    def _finish(self, ended_by: Literal["terminator", "timeout", "max_digits"], t_last: float) -> DigitEntry:
        digits = "".join(self._digits)
        t_first = self._t_first if self._digits else t_last
        self._digits = []
        return DigitEntry(digits=digits, ended_by=ended_by, escape=digits == self.config.escape,
                          t_first=t_first, t_last=t_last)


@dataclass(frozen=True, slots=True)
class _Report:
    t: float
    source: str
    digit: str


class DtmfDeduper:
    """One True per key press, however many sources report it.

    feed() returns False for the copy of a press that a DIFFERENT source reported, with the
    same digit, at most window_s earlier and not yet matched: each press matches at most one
    copy, oldest first. Presses from one source are never matched against each other (a fast
    "11" is two presses). Unmatched reports older than window_s are forgotten, so memory is
    bounded by the presses within one window.
    """

    def __init__(self, window_s: float = 0.6) -> None:
        if not math.isfinite(window_s) or window_s <= 0.0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s: Final = window_s
        self._clock: float | None = None
        self._unmatched: deque[_Report] = deque()

    @property
    def unmatched(self) -> int:
        """Reports still waiting for their copy from another source."""
        return len(self._unmatched)

    def feed(self, source: str, digit: str, now: float) -> bool:
        """A press of `digit` reported by `source` (e.g. "ari", "audiosocket") at `now`.
        True: a new press, act on it. False: a copy of one already reported."""
        if not isinstance(source, str) or not source:
            raise ValueError(f"source must be a non-empty string, got {source!r}")
        d = normalize_digit(digit)
        self._clock = _check_time(now, self._clock)
        while self._unmatched and now - self._unmatched[0].t > self.window_s:
            self._unmatched.popleft()
        for i, r in enumerate(self._unmatched):
            if r.digit == d and r.source != source:
                del self._unmatched[i]
                return False
        self._unmatched.append(_Report(now, source, d))
        return True


class FloodGuard:
    """Key presses faster than a keypad sends them are not entries.

    ITU-T Q.24 lets a press be as short as 40 ms tone + 40 ms pause (12.5 a second); people
    and autodiallers stay well below. More than `max_keys` presses within `window_s` trips the
    guard: that press and every one after it is dropped until `quiet_s` passes with no press at
    all. `bursts` counts the floods, `dropped` the presses they cost. Memory is bounded by
    `max_keys`.
    """

    def __init__(self, max_keys: int = 15, window_s: float = 1.0, quiet_s: float = 1.0) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be an int >= 1, got {max_keys!r}")
        for name, value in (("window_s", window_s), ("quiet_s", quiet_s)):
            if not math.isfinite(value) or value <= 0.0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.max_keys: Final = max_keys
        self.window_s: Final = window_s
        self.quiet_s: Final = quiet_s
        self._clock: float | None = None
        self._recent: deque[float] = deque(maxlen=max_keys)
        self._flooding = False
        self._last = 0.0
        self.bursts = 0
        self.dropped = 0

    @property
    def flooding(self) -> bool:
        return self._flooding

    def feed(self, now: float) -> bool:
        """A press at `now`. True: a press to act on; False: part of a flood, drop it."""
        self._clock = _check_time(now, self._clock)
        if self._flooding and now - self._last >= self.quiet_s:
            self._flooding = False  # it stopped: presses count again from here
            self._recent.clear()
        self._last = now
        if not self._flooding:
            if len(self._recent) == self.max_keys and now - self._recent[0] <= self.window_s:
                self._flooding = True
                self.bursts += 1
            else:
                self._recent.append(now)
                return True
        self.dropped += 1
        return False
