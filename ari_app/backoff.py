"""Delays between attempts to reconnect the ARI event WebSocket.

Pure: the caller sleeps for `next_delay()` itself and calls `reset()` once a connection is up.
The delay grows exponentially so a down Asterisk is not hammered, is capped so a restarted one
is found again within seconds, and is jittered so many agents do not reconnect in lockstep.
"""

from __future__ import annotations

import math
import random
from typing import Final


class Backoff:
    """Exponential backoff with a cap and multiplicative jitter.

    Attempt n (0-based since the last reset) waits min(initial_s * factor**n, max_s) times a
    uniform factor in [1 - jitter, 1 + jitter]; the result is never negative and never above
    max_s * (1 + jitter). Pass a seeded `rng` for reproducible delays in tests.
    """

    def __init__(
        self,
        initial_s: float = 0.25,
        factor: float = 2.0,
        max_s: float = 10.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        for name, value in (("initial_s", initial_s), ("factor", factor), ("max_s", max_s), ("jitter", jitter)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if initial_s <= 0.0:
            raise ValueError(f"initial_s must be > 0, got {initial_s}")
        if factor < 1.0:
            raise ValueError(f"factor must be >= 1 (delays must not shrink), got {factor}")
        if max_s < initial_s:
            raise ValueError(f"max_s ({max_s}) must be >= initial_s ({initial_s})")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {jitter}")
        self.initial_s: Final = initial_s
        self.factor: Final = factor
        self.max_s: Final = max_s
        self.jitter: Final = jitter
        self._rng = rng if rng is not None else random.Random()
        self._attempts = 0
        self._base = initial_s  # un-jittered delay of the next attempt, already capped

    @property
    def attempts(self) -> int:
        """Delays handed out since construction or the last reset()."""
        return self._attempts

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call counts as one attempt."""
        base = self._base
        self._attempts += 1
        # Grow step by step rather than factor**n: no overflow however long Asterisk stays down.
        self._base = min(self.max_s, base * self.factor)
        delay = base * self._rng.uniform(1.0 - self.jitter, 1.0 + self.jitter) if self.jitter else base
        # uniform() may round just past its bounds; clamp so the documented limits always hold.
        return min(max(delay, 0.0), self.max_s * (1.0 + self.jitter))

    def reset(self) -> None:
        """A connection succeeded: the next failure starts again from initial_s."""
        self._attempts = 0
        self._base = self.initial_s
