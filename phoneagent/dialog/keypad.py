"""Key presses for the dialog: one press reaches us twice on an ARI call (the ARI event and the
AudioSocket DTMF frame through the bridge), once on a direct AudioSocket call. De-duplicated
presses are collected into entries (account numbers ending in #, or a pause). A flood of
presses (dtmf.FloodGuard) is dropped, with the entry it was part of, and reported once.
"""

from __future__ import annotations

from collections.abc import Callable

from phoneagent.dialog.dtmf import DigitCollector, DigitConfig, DigitEntry, DtmfDeduper, FloodGuard
from media.clock import Clock


class Keypad:
    # Nobody presses one key twice within 80 ms (ITU-T Q.24: >= 40 ms tone + 40 ms pause), but
    # Asterisk 22 was seen reporting one RFC 2833 press as two ChannelDtmfReceived 5-15 ms apart.
    DEBOUNCE_S = 0.08

    def __init__(self, config: DigitConfig, clock: Clock, *, on_flood: Callable[[str], None] | None = None) -> None:
        self.clock = clock
        self._dedup = DtmfDeduper()
        self._collector = DigitCollector(config)
        self.flood = FloodGuard()
        self._on_flood = on_flood  # told once per flood, with the open entry it threw away
        self.entries: list[DigitEntry] = []
        self._last: dict[str, tuple[str, float]] = {}
        self._flood_t = clock.now()  # the flood guard's latest time (it wants time to move forward)

    def press(self, source: str, digit: str, at: float | None = None) -> list[DigitEntry]:
        """A digit from `source` ("audiosocket" or "ari"); returns entries it completed.

        `at`: when the press was received (the session's clock), if known. The flood guard judges
        that (a handler that is behind would otherwise see a flood as a slow, plausible typist);
        de-duplication and entry timing use the time of handling, as the other source's report
        and the inter-digit timeout do."""
        now = self.clock.now()
        last = self._last.get(source)
        self._last[source] = (digit, now)
        if last is not None and last[0] == digit and now - last[1] < self.DEBOUNCE_S:
            return []  # a repeated report of one press (Asterisk sometimes emits two events)
        try:
            if not self._dedup.feed(source, digit, now):
                return []
            bursts = self.flood.bursts
            self._flood_t = max(self._flood_t, now if at is None else min(at, now))  # never back in time
            if not self.flood.feed(self._flood_t):
                if self.flood.bursts != bursts:  # this press started a flood: its entry goes too
                    thrown = self._collector.pending
                    self._collector.clear()
                    if self._on_flood is not None:
                        self._on_flood(thrown)
                return []
            done = self._collector.feed(digit, now)
        except ValueError:  # not a DTMF key: ignore it, never end the call over it
            return []
        self.entries += done
        return done

    def poll(self) -> list[DigitEntry]:
        done = self._collector.poll(self.clock.now())
        self.entries += done
        return done

    @property
    def pending(self) -> str:
        return self._collector.pending
