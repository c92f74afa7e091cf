"""DigitCollector timelines and DtmfDeduper pairing, with hypothesis checks on both."""

from __future__ import annotations

import heapq
import itertools
import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoneagent.dialog.dtmf import DTMF_DIGITS, DigitCollector, DigitConfig, DigitEntry, DtmfDeduper, FloodGuard, normalize_digit

Press = tuple[str, float]  # (key, time)


def keys(spec: str, start: float = 0.0, step: float = 0.5) -> list[Press]:
    """'12#' -> presses of 1, 2, # at start, start + step, ..."""
    return [(k, start + i * step) for i, k in enumerate(spec)]


def feed_all(c: DigitCollector, presses: list[Press]) -> list[DigitEntry]:
    out: list[DigitEntry] = []
    for k, t in presses:
        out += c.feed(k, t)
    return out


# --- normalize_digit -------------------------------------------------------------------------


@pytest.mark.parametrize("digit", list(DTMF_DIGITS) + list("abcd"))
def test_valid_digits_normalise_upper(digit: str) -> None:
    assert normalize_digit(digit) == digit.upper()


@pytest.mark.parametrize("digit", ["", "E", "e", "12", " ", "x", "#1", "\u0661", "+"])
def test_invalid_digits_name_the_digit(digit: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid DTMF digit {digit!r}")):
        normalize_digit(digit)


# --- DigitCollector --------------------------------------------------------------------------


def test_terminator_ends_entry_and_is_not_a_digit() -> None:
    c = DigitCollector(DigitConfig())
    assert feed_all(c, keys("123")) == []
    assert c.pending == "123"
    assert c.feed("#", 1.5) == [DigitEntry("123", "terminator", False, 0.0, 1.5)]
    assert c.pending == "" and c.deadline is None


def test_terminator_alone_is_an_empty_entry() -> None:
    c = DigitCollector()
    assert c.feed("#", 2.0) == [DigitEntry("", "terminator", False, 2.0, 2.0)]


def test_lower_case_input_is_stored_upper_case() -> None:
    c = DigitCollector()
    assert feed_all(c, keys("1a*d#")) == [DigitEntry("1A*D", "terminator", False, 0.0, 2.0)]


def test_timeout_poll_before_and_after_deadline() -> None:
    c = DigitCollector(DigitConfig(inter_digit_timeout_s=3.0))
    assert c.poll(0.0) == [] and c.deadline is None
    feed_all(c, keys("42", start=1.0))
    assert c.deadline == 4.5
    assert c.poll(4.49) == []
    assert c.pending == "42"
    assert c.poll(4.5) == [DigitEntry("42", "timeout", False, 1.0, 1.5)]
    assert c.poll(10.0) == [] and c.deadline is None


def test_each_digit_moves_the_deadline() -> None:
    c = DigitCollector(DigitConfig(inter_digit_timeout_s=1.0))
    for i, k in enumerate("98765"):
        c.feed(k, i * 0.9)
        assert c.deadline == pytest.approx(i * 0.9 + 1.0)
        assert c.poll(i * 0.9 + 0.85) == []
    (entry,) = c.poll(4.6)
    assert (entry.digits, entry.ended_by, entry.t_first) == ("98765", "timeout", 0.0)
    assert entry.t_last == pytest.approx(3.6)


def test_missed_poll_reports_the_timed_out_entry_before_the_new_press() -> None:
    c = DigitCollector(DigitConfig(inter_digit_timeout_s=3.0))
    c.feed("1", 0.0)
    assert c.feed("2", 5.0) == [DigitEntry("1", "timeout", False, 0.0, 0.0)]
    assert c.pending == "2"
    assert c.feed("#", 9.0) == [DigitEntry("2", "timeout", False, 5.0, 5.0),
                                DigitEntry("", "terminator", False, 9.0, 9.0)]


def test_max_digits_ends_at_once_and_a_habitual_terminator_is_swallowed() -> None:
    c = DigitCollector(DigitConfig(max_digits=4))
    assert feed_all(c, keys("123")) == []
    assert c.feed("4", 1.5) == [DigitEntry("1234", "max_digits", False, 0.0, 1.5)]
    assert c.deadline is None
    assert c.feed("#", 2.0) == []  # "PIN followed by #" out of habit: not an empty entry
    assert c.feed("#", 2.5) == [DigitEntry("", "terminator", False, 2.5, 2.5)]  # only the first


def test_terminator_after_max_digits_is_kept_after_the_timeout_or_another_key() -> None:
    c = DigitCollector(DigitConfig(max_digits=2, inter_digit_timeout_s=3.0))
    feed_all(c, keys("12"))
    assert c.feed("#", 3.5) == [DigitEntry("", "terminator", False, 3.5, 3.5)]
    feed_all(c, keys("129#", start=10.0))
    assert c.pending == ""
    c2 = DigitCollector(DigitConfig(max_digits=2))
    assert [e.digits for e in feed_all(c2, keys("129#"))] == ["12", "9"]


def test_clear_drops_pending_and_the_swallow() -> None:
    c = DigitCollector(DigitConfig(max_digits=2))
    feed_all(c, keys("12"))
    c.clear()
    assert c.feed("#", 1.0) == [DigitEntry("", "terminator", False, 1.0, 1.0)]
    c.feed("5", 1.5)
    c.clear()
    assert c.pending == "" and c.deadline is None and c.poll(100.0) == []
    with pytest.raises(ValueError, match="backwards"):
        c.poll(99.0)  # the clock check survives clear()


@pytest.mark.parametrize(("spec", "escape"), [
    ("0#", True), ("0123#", False), ("00#", False), ("#", False), ("10#", False),
])
def test_escape_only_when_the_whole_entry_is_the_escape(spec: str, escape: bool) -> None:
    (entry,) = feed_all(DigitCollector(), keys(spec))
    assert entry.escape is escape


def test_escape_by_timeout_and_by_max_digits() -> None:
    c = DigitCollector()
    c.feed("0", 0.0)
    assert c.poll(3.0) == [DigitEntry("0", "timeout", True, 0.0, 0.0)]
    c1 = DigitCollector(DigitConfig(max_digits=1))
    assert c1.feed("0", 0.0) == [DigitEntry("0", "max_digits", True, 0.0, 0.0)]


def test_multi_digit_escape_and_no_escape() -> None:
    c = DigitCollector(DigitConfig(escape="*0"))
    assert [e.escape for e in feed_all(c, keys("*0#0#"))] == [True, False]
    c2 = DigitCollector(DigitConfig(escape=None))
    assert [e.escape for e in feed_all(c2, keys("0#"))] == [False]


def test_no_terminator_makes_hash_a_digit() -> None:
    c = DigitCollector(DigitConfig(terminator=None))
    feed_all(c, keys("1#2"))
    assert c.poll(10.0) == [DigitEntry("1#2", "timeout", False, 0.0, 1.0)]


def test_star_as_terminator_config_is_normalised() -> None:
    assert DigitConfig(terminator="*", escape="a").escape == "A"
    c = DigitCollector(DigitConfig(terminator="*"))
    assert feed_all(c, keys("1#*")) == [DigitEntry("1#", "terminator", False, 0.0, 1.0)]


def test_invalid_digit_changes_nothing() -> None:
    c = DigitCollector()
    c.feed("1", 0.0)
    with pytest.raises(ValueError, match="invalid DTMF digit 'X'"):
        c.feed("X", 1.0)
    assert c.pending == "1" and c.deadline == 3.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_time_must_be_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        DigitCollector().feed("1", bad)


def test_time_going_backwards() -> None:
    c = DigitCollector()
    c.feed("1", 5.0)
    with pytest.raises(ValueError, match=r"time must not go backwards: 4.0 after 5.0"):
        c.feed("2", 4.0)
    with pytest.raises(ValueError, match="backwards"):
        c.poll(4.9)
    assert c.feed("2", 5.0) == []  # equal times are fine


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"terminator": "##"}, "terminator must be one DTMF digit"),
    ({"terminator": ""}, "terminator must be one DTMF digit"),
    ({"terminator": "x"}, "terminator: invalid DTMF digit 'x'"),
    ({"escape": ""}, "escape must be a non-empty string"),
    ({"escape": "0e"}, "escape: invalid DTMF digit 'e'"),
    ({"escape": "0#"}, "must not contain the terminator"),
    ({"escape": "123", "max_digits": 2}, "longer than max_digits"),
    ({"max_digits": 0}, "max_digits must be an int >= 1"),
    ({"max_digits": True}, "max_digits must be an int >= 1"),
    ({"inter_digit_timeout_s": 0.0}, "inter_digit_timeout_s must be > 0"),
    ({"inter_digit_timeout_s": float("nan")}, "inter_digit_timeout_s must be > 0"),
])
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DigitConfig(**kwargs)  # type: ignore[arg-type]


_key = st.sampled_from("0123456789*#ABCDabcd")


@given(
    presses=st.lists(st.tuples(_key, st.floats(0.0, 5.0)), max_size=60),
    terminator=st.sampled_from(["#", "*", None]),
    max_digits=st.integers(1, 8),
    timeout=st.sampled_from([0.5, 1.0, 3.0]),
    polls=st.lists(st.booleans(), max_size=60),
)
def test_random_presses(presses: list[tuple[str, float]], terminator: str | None, max_digits: int,
                        timeout: float, polls: list[bool]) -> None:
    """Whatever the keys and timing: every non-terminator key lands in exactly one entry, in
    order; entries obey their config; polling or not never changes the entries."""
    cfg = DigitConfig(terminator=terminator, max_digits=max_digits, inter_digit_timeout_s=timeout)
    timeline = list(zip(itertools.accumulate(g for _, g in presses), (k for k, _ in presses), strict=True))
    results = []
    for do_poll in (False, True):
        c = DigitCollector(cfg)
        entries: list[DigitEntry] = []
        for i, (t, k) in enumerate(timeline):
            if do_poll and i < len(polls) and polls[i]:
                entries += c.poll(t)
            entries += c.feed(k, t)
        end = (timeline[-1][0] if timeline else 0.0) + timeout
        entries += c.poll(end)
        assert c.pending == "" and c.deadline is None
        results.append(entries)
    assert results[0] == results[1]
    entries = results[0]
    digits = "".join(k.upper() for _, k in timeline if k.upper() != terminator)
    assert "".join(e.digits for e in entries) == digits
    for e in entries:
        assert len(e.digits) <= max_digits
        assert (len(e.digits) == max_digits) == (e.ended_by == "max_digits")
        assert terminator is None or terminator not in e.digits
        assert e.escape == (e.digits == "0")
        assert e.t_first <= e.t_last
        assert e.digits or e.ended_by == "terminator"
    assert [e.t_first for e in entries] == sorted(e.t_first for e in entries)


# --- DtmfDeduper -----------------------------------------------------------------------------


def run_dedup(reports: list[tuple[str, str, float]], window_s: float = 0.6) -> list[bool]:
    d = DtmfDeduper(window_s)
    return [d.feed(src, digit, t) for src, digit, t in reports]


def test_copy_from_the_other_source_is_dropped() -> None:
    assert run_dedup([("ari", "5", 0.0), ("audiosocket", "5", 0.1)]) == [True, False]
    assert run_dedup([("audiosocket", "5", 0.0), ("ari", "5", 0.6)]) == [True, False]  # window inclusive


def test_copy_after_the_window_is_a_new_press() -> None:
    assert run_dedup([("ari", "5", 0.0), ("audiosocket", "5", 0.61)]) == [True, True]


def test_same_source_is_never_deduplicated() -> None:
    assert run_dedup([("ari", "1", 0.0), ("ari", "1", 0.0), ("ari", "1", 0.1)]) == [True, True, True]


def test_different_digits_do_not_match() -> None:
    assert run_dedup([("ari", "1", 0.0), ("audiosocket", "2", 0.1)]) == [True, True]


def test_quick_double_press_from_both_sources() -> None:
    reports = [("ari", "1", 0.0), ("ari", "1", 0.15), ("audiosocket", "1", 0.2), ("audiosocket", "1", 0.35)]
    assert run_dedup(reports) == [True, True, False, False]


def test_each_press_matches_one_copy() -> None:
    reports = [("ari", "1", 0.0), ("audiosocket", "1", 0.1), ("audiosocket", "1", 0.2)]
    assert run_dedup(reports) == [True, False, True]
    reports = [("ari", "1", 0.0), ("audiosocket", "1", 0.1), ("ari", "1", 0.2), ("audiosocket", "1", 0.3)]
    assert run_dedup(reports) == [True, False, True, False]


def test_case_insensitive_digits_match() -> None:
    assert run_dedup([("ari", "a", 0.0), ("audiosocket", "A", 0.1)]) == [True, False]


def test_memory_is_bounded_by_the_window() -> None:
    d = DtmfDeduper(window_s=0.6)
    for i in range(1000):
        d.feed("ari", "7", i * 0.1)
    assert d.unmatched == 7  # 0.0 .. 0.6 s back, inclusive


def test_dedup_bad_input() -> None:
    d = DtmfDeduper()
    with pytest.raises(ValueError, match="source must be a non-empty string"):
        d.feed("", "1", 0.0)
    with pytest.raises(ValueError, match="invalid DTMF digit 'Z'"):
        d.feed("ari", "Z", 0.0)
    d.feed("ari", "1", 1.0)
    with pytest.raises(ValueError, match="backwards"):
        d.feed("audiosocket", "1", 0.9)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="window_s must be > 0"):
            DtmfDeduper(bad)


@given(
    presses=st.lists(st.tuples(st.sampled_from("0123#"), st.floats(0.0, 1.0)), max_size=40),
    delays=st.lists(st.tuples(st.floats(0.0, 0.599), st.floats(0.0, 0.599)), min_size=40, max_size=40),
    b_first=st.booleans(),
)
def test_every_press_reported_by_both_sources_counts_once(
    presses: list[tuple[str, float]], delays: list[tuple[float, float]], b_first: bool,
) -> None:
    """Each press reaches both sources, each source in order, each copy less than window_s
    after the press: exactly one True per press, never more."""
    times = list(itertools.accumulate(g for _, g in presses))
    streams: dict[str, list[tuple[float, int, str, str]]] = {"ari": [], "audiosocket": []}
    for src, pick in (("ari", 0), ("audiosocket", 1)):
        last = 0.0
        for i, ((digit, _), t) in enumerate(zip(presses, times, strict=False)):
            last = max(last, t + delays[i][pick])  # a source is FIFO: never ahead of its last report
            streams[src].append((last, int(src == "ari") ^ int(b_first), src, digit))
    merged = list(heapq.merge(streams["ari"], streams["audiosocket"]))
    out = run_dedup([(src, digit, t) for t, _, src, digit in merged])
    assert out.count(True) == len(presses)
    for digit in set("0123#"):
        n = sum(1 for d, _ in presses if d == digit)
        assert sum(1 for ok, (_, _, _, d) in zip(out, merged, strict=True) if ok and d == digit) == n


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from("12"), st.floats(0.0, 1.0)), max_size=50))
def test_any_reports_bounds(reports: list[tuple[str, str, float]]) -> None:
    """Arbitrary reports from two sources: per digit, at least as many Trues as the busier
    source reported (a copy hides at most one press) and never more than all reports."""
    times = itertools.accumulate(g for _, _, g in reports)
    timeline = [(src, digit, t) for (src, digit, _), t in zip(reports, times, strict=True)]
    out = run_dedup(timeline)
    for digit in "12":
        per_source = Counter(src for src, d, _ in timeline if d == digit)
        trues = sum(1 for ok, (_, d, _) in zip(out, timeline, strict=True) if ok and d == digit)
        assert max(per_source.values(), default=0) <= trues <= sum(per_source.values())


@given(st.lists(st.tuples(st.sampled_from("12"), st.floats(0.0, 1.0)), max_size=50))
def test_one_source_alone_is_always_new(reports: list[tuple[str, float]]) -> None:
    d = DtmfDeduper()
    t = 0.0
    for digit, gap in reports:
        t += gap
        assert d.feed("ari", digit, t)


def test_flood_guard_trips_on_the_press_past_max_keys_within_the_window() -> None:
    g = FloodGuard(max_keys=3, window_s=1.0, quiet_s=0.5)
    assert [g.feed(t) for t in (0.0, 0.4, 0.9)] == [True, True, True]
    assert g.feed(1.0) is False and g.flooding and g.bursts == 1  # 4 presses within 1.0 s
    assert g.feed(1.3) is False  # still flooding: less than quiet_s since the last press
    assert g.feed(1.79) is False  # each dropped press restarts the quiet wait
    assert g.feed(2.29) is True and not g.flooding  # 0.5 s quiet: presses count again
    assert g.dropped == 3 and g.bursts == 1


def test_flood_guard_window_is_sliding() -> None:
    g = FloodGuard(max_keys=3, window_s=1.0, quiet_s=0.5)
    assert all(g.feed(t) for t in (0.0, 0.4, 0.9, 1.01, 1.41, 1.91))  # never 4 within 1.0 s
    assert g.bursts == 0 and g.dropped == 0


def test_flood_guard_counts_each_burst() -> None:
    g = FloodGuard(max_keys=2, window_s=1.0, quiet_s=1.0)
    for start in (0.0, 10.0):
        for i in range(10):
            g.feed(start + i * 0.01)
    assert g.bursts == 2 and g.dropped == 16


@pytest.mark.parametrize("kw", [{"max_keys": 0}, {"max_keys": True}, {"window_s": 0.0}, {"quiet_s": float("nan")}])
def test_flood_guard_rejects_bad_settings(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FloodGuard(**kw)  # type: ignore[arg-type]


def test_flood_guard_time_must_not_go_backwards() -> None:
    g = FloodGuard()
    g.feed(5.0)
    with pytest.raises(ValueError, match="backwards"):
        g.feed(4.0)
