"""Key presses for the dialog: one press reaches us twice on an ARI call (the ARI event and the
AudioSocket DTMF frame through the bridge), once on a direct AudioSocket call. De-duplicated
presses are collected into entries (account numbers ending in #, or a pause).
"""

from __future__ import annotations

from phoneagent.dialog.dtmf import DigitCollector, DigitConfig, DigitEntry, DtmfDeduper
from media.clock import Clock


class Keypad:
    # Nobody presses one key twice within 80 ms (ITU-T Q.24: >= 40 ms tone + 40 ms pause), but
    # Asterisk 22 was seen reporting one RFC 2833 press as two ChannelDtmfReceived 5-15 ms apart.
    DEBOUNCE_S = 0.08

    def __init__(self, config: DigitConfig, clock: Clock) -> None:
        self.clock = clock
        self._dedup = DtmfDeduper()
        self._collector = DigitCollector(config)
        self.entries: list[DigitEntry] = []
        self._last: dict[str, tuple[str, float]] = {}

    def press(self, source: str, digit: str) -> list[DigitEntry]:
        """A digit from `source` ("audiosocket" or "ari"); returns entries it completed."""
        now = self.clock.now()
        last = self._last.get(source)
        self._last[source] = (digit, now)
        if last is not None and last[0] == digit and now - last[1] < self.DEBOUNCE_S:
            return []  # a repeated report of one press (Asterisk sometimes emits two events)
        try:
            if not self._dedup.feed(source, digit, now):
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
