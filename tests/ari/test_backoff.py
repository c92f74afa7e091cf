"""Backoff: growth, cap, reset, jitter bounds, argument checks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ari_app.backoff import Backoff


def test_grows_exponentially_then_caps_without_jitter() -> None:
    b = Backoff(initial_s=0.25, factor=2.0, max_s=10.0, jitter=0.0)
    assert [b.next_delay() for _ in range(9)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert b.attempts == 9


def test_defaults() -> None:
    b = Backoff(jitter=0.0)
    assert (b.initial_s, b.factor, b.max_s) == (0.25, 2.0, 10.0)
    assert Backoff().jitter == 0.2


def test_reset_starts_over() -> None:
    b = Backoff(jitter=0.0)
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.attempts == 0
    assert b.next_delay() == 0.25
    assert b.attempts == 1


def test_factor_one_is_constant() -> None:
    b = Backoff(initial_s=1.0, factor=1.0, max_s=1.0, jitter=0.0)
    assert [b.next_delay() for _ in range(3)] == [1.0, 1.0, 1.0]


def test_many_attempts_do_not_overflow() -> None:
    b = Backoff(initial_s=1.0, factor=1e300, max_s=1e300, jitter=0.0)
    for _ in range(2000):
        assert b.next_delay() <= 1e300


def test_seeded_rng_is_reproducible() -> None:
    a = Backoff(rng=random.Random(7))
    b = Backoff(rng=random.Random(7))
    assert [a.next_delay() for _ in range(20)] == [b.next_delay() for _ in range(20)]


def test_jitter_spreads_delays() -> None:
    b = Backoff(initial_s=1.0, factor=1.0, max_s=1.0, jitter=0.2, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(200)]
    assert len(set(delays)) > 100
    assert min(delays) < 0.9 and max(delays) > 1.1


@given(seed=st.integers(0, 2**32), jitter=st.floats(0.0, 1.0), n=st.integers(1, 40))
def test_jitter_bounds(seed: int, jitter: float, n: int) -> None:
    b = Backoff(initial_s=0.25, factor=2.0, max_s=10.0, jitter=jitter, rng=random.Random(seed))
    for i in range(n):
        base = min(10.0, 0.25 * 2.0**i)
        d = b.next_delay()
        assert 0.0 <= d <= 10.0 * (1 + jitter)
        assert base * (1 - jitter) - 1e-12 <= d <= base * (1 + jitter) + 1e-12


class _ExtremeRng(random.Random):
    """Stands in for an rng whose uniform() rounds just outside its bounds."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def uniform(self, a: float, b: float) -> float:
        return self.value


@pytest.mark.parametrize(("value", "expected"), [(-0.5, 0.0), (5.0, 12.0)])
def test_delay_is_clamped(value: float, expected: float) -> None:
    b = Backoff(initial_s=10.0, max_s=10.0, jitter=0.2, rng=_ExtremeRng(value))
    assert b.next_delay() == expected


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"initial_s": 0.0}, "initial_s must be > 0"),
    ({"initial_s": -1.0}, "initial_s must be > 0"),
    ({"factor": 0.5}, "factor must be >= 1"),
    ({"max_s": 0.1}, r"max_s \(0.1\) must be >= initial_s \(0.25\)"),
    ({"jitter": -0.1}, r"jitter must be within \[0, 1\]"),
    ({"jitter": 1.5}, r"jitter must be within \[0, 1\]"),
    ({"initial_s": float("nan")}, "initial_s must be a finite number"),
    ({"max_s": float("inf")}, "max_s must be a finite number"),
])
def test_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)  # type: ignore[arg-type]
