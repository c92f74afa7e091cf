"""Keypad: one key press reported by ARI and AudioSocket counts once; entries end on # or a pause."""

from __future__ import annotations

import pytest

from phoneagent.dialog.dtmf import DigitConfig, DigitEntry
from media.clock import ManualClock
from phoneagent.dialog.keypad import Keypad

T0 = 1000.0  # ManualClock's default start


def make(config: DigitConfig | None = None) -> tuple[Keypad, ManualClock]:
    clock = ManualClock(T0)
    return Keypad(config or DigitConfig(), clock), clock


def test_one_press_from_both_sources_counts_once() -> None:
    pad, clock = make()
    assert pad.press("audiosocket", "5") == []
    clock.advance(0.012)
    assert pad.press("ari", "5") == []
    assert pad.pending == "5"


def test_one_press_from_both_sources_ari_first() -> None:
    pad, clock = make()
    pad.press("ari", "5")
    clock.advance(0.3)  # the copy may lag behind (jitter buffer), within the dedup window
    pad.press("audiosocket", "5")
    assert pad.pending == "5"


def test_fast_repeated_report_from_one_source_counts_once() -> None:
    """Asterisk 22 sometimes reports one RFC 2833 press as two ChannelDtmfReceived 5-15 ms apart."""
    pad, clock = make()
    pad.press("ari", "7")
    clock.advance(0.010)
    pad.press("ari", "7")
    assert pad.pending == "7"


def test_repeated_report_just_inside_the_debounce_counts_once() -> None:
    pad, clock = make()
    pad.press("ari", "7")
    clock.advance(Keypad.DEBOUNCE_S * 0.9)
    pad.press("ari", "7")
    assert pad.pending == "7"


def test_debounce_is_80_ms() -> None:
    assert Keypad.DEBOUNCE_S == pytest.approx(0.08)


def test_duplicated_ari_report_plus_audiosocket_copy_counts_once() -> None:
    pad, clock = make()
    pad.press("ari", "3")
    clock.advance(0.005)
    pad.press("audiosocket", "3")
    clock.advance(0.005)
    pad.press("ari", "3")  # Asterisk's duplicate
    assert pad.pending == "3"


def test_real_double_press_from_one_source_counts_twice() -> None:
    pad, clock = make()
    pad.press("audiosocket", "1")
    clock.advance(0.2)
    pad.press("audiosocket", "1")
    assert pad.pending == "11"


def test_real_double_press_from_both_sources_counts_twice() -> None:
    pad, clock = make()
    for _ in range(2):
        pad.press("audiosocket", "1")
        clock.advance(0.01)
        pad.press("ari", "1")
        clock.advance(0.19)
    assert pad.pending == "11"


def test_different_digits_fast_from_one_source_both_count() -> None:
    pad, clock = make()
    pad.press("ari", "1")
    clock.advance(0.01)
    pad.press("ari", "2")
    assert pad.pending == "12"


def test_entry_ends_on_hash() -> None:
    pad, clock = make()
    for key in "4711":
        pad.press("audiosocket", key)
        clock.advance(0.25)  # binary-exact steps keep the timestamps exact
    done = pad.press("audiosocket", "#")
    assert done == [DigitEntry("4711", "terminator", False, T0, T0 + 1.0)]
    assert pad.entries == done
    assert pad.pending == ""


def test_entry_ends_on_timeout_via_poll() -> None:
    pad, clock = make(DigitConfig(inter_digit_timeout_s=3.0))
    pad.press("ari", "4")
    clock.advance(0.5)
    pad.press("ari", "2")
    clock.advance(2.9)
    assert pad.poll() == []
    assert pad.pending == "42"
    clock.advance(0.1)
    done = pad.poll()
    assert done == [DigitEntry("42", "timeout", False, T0, T0 + 0.5)]
    assert pad.entries == done
    assert pad.poll() == []
    assert pad.entries == done  # reported once


def test_entries_accumulate() -> None:
    pad, clock = make()
    for key in "12#":
        pad.press("ari", key)
        clock.advance(0.2)
    for key in "34#":
        pad.press("ari", key)
        clock.advance(0.2)
    assert [e.digits for e in pad.entries] == ["12", "34"]


def test_escape_entry_zero() -> None:
    pad, clock = make()
    pad.press("audiosocket", "0")
    clock.advance(0.2)
    (entry,) = pad.press("audiosocket", "#")
    assert entry.digits == "0" and entry.escape


def test_escape_entry_zero_on_timeout() -> None:
    pad, clock = make()
    pad.press("ari", "0")
    clock.advance(3.0)
    (entry,) = pad.poll()
    assert entry.digits == "0" and entry.escape and entry.ended_by == "timeout"


def test_zero_inside_a_number_is_not_the_escape() -> None:
    pad, clock = make()
    for key in "100#":
        pad.press("ari", key)
        clock.advance(0.2)
    (entry,) = pad.entries
    assert entry.digits == "100" and not entry.escape


@pytest.mark.parametrize("bad", ["x", "", "12", "E", " ", "+"])
def test_invalid_digits_are_ignored(bad: str) -> None:
    pad, clock = make()
    pad.press("ari", "1")
    clock.advance(0.25)
    assert pad.press("ari", bad) == []
    clock.advance(0.25)
    assert pad.press("audiosocket", bad) == []
    clock.advance(0.25)
    pad.press("ari", "2")
    clock.advance(0.25)
    assert pad.press("ari", "#") == [DigitEntry("12", "terminator", False, T0, T0 + 1.0)]


def test_lower_case_letters_are_keys() -> None:
    pad, clock = make()
    pad.press("ari", "a")
    assert pad.pending == "A"


def test_a_flood_of_presses_is_dropped_with_its_open_entry_and_reported_once() -> None:
    """2000 presses back to back (a stuck key, a modem heard as DTMF): at most the entries
    finished before the guard tripped, the open one thrown away, one report; then, after a
    quiet second, a person's entry counts again."""
    clock = ManualClock(T0)
    floods: list[str] = []
    pad = Keypad(DigitConfig(), clock, on_flood=floods.append)
    done: list[DigitEntry] = []
    keys = "0123456789#"
    for i in range(2000):
        done += pad.press("audiosocket", keys[i % len(keys)])
        clock.advance(0.001)
    assert [e.digits for e in done] == ["0123456789"]  # the first 11 presses, before the guard tripped
    assert floods == ["0123"] and pad.flood.bursts == 1 and pad.flood.dropped == 2000 - 15
    assert pad.pending == ""
    clock.advance(1.0)
    for k in "4572#":
        done += pad.press("audiosocket", k)
        clock.advance(0.25)
    assert [e.digits for e in done][-1] == "4572" and floods == ["0123"]


def test_a_fast_person_is_no_flood() -> None:
    """Twelve presses a second (faster than people type; Q.24 allows 12.5) for three seconds."""
    clock = ManualClock(T0)
    pad = Keypad(DigitConfig(max_digits=40), clock, on_flood=lambda _: pytest.fail("not a flood"))
    for _ in range(36):
        pad.press("ari", "1" if len(pad.pending) % 2 else "2")
        clock.advance(1 / 12)
    assert len(pad.pending) == 36 and pad.flood.bursts == 0


def test_a_flood_worked_through_late_is_still_a_flood() -> None:
    """A busy box reads 2000 presses as they came (1 ms apart) but gets round to each 100 ms
    later: the guard judges the receipt times, so the flood trips as if the box were idle."""
    clock = ManualClock(T0)
    floods: list[str] = []
    pad = Keypad(DigitConfig(), clock, on_flood=floods.append)
    keys, done = "0123456789#", list[DigitEntry]()
    for i in range(60):
        clock.advance(0.1)
        done += pad.press("audiosocket", keys[i % len(keys)], at=T0 + i * 0.001)
        done += pad.poll()  # the dialog polls between items, at the time of handling
    assert [e.digits for e in done] == ["0123456789"] and floods == ["0123"]


def test_a_receipt_time_behind_the_clock_never_moves_time_back() -> None:
    """A press stamped before the last ARI press or poll is taken at that later time, not dropped."""
    pad, clock = make()
    clock.advance(1.0)
    pad.press("ari", "1")
    pad.poll()
    pad.press("audiosocket", "2", at=T0 + 0.5)  # read before the ARI press was handled
    assert pad.pending == "12"
