"""Endpointer timelines: probability sequences with exact window end times -> exact events."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoneagent.dialog.endpointer import (
    Backchannel,
    BargeIn,
    EndOfTurn,
    Endpointer,
    EndpointerConfig,
    Event,
    OverlapHeld,
    SpeculationCancelled,
    SpeculativeEndpoint,
    SpeechConfirmed,
    SpeechDiscarded,
    SpeechStarted,
)

STEP = 0.05  # 50 ms windows: every configured duration below is a whole number of windows
# min_speech 4 windows, barge-in 6, delay 10, speculation 5; barge-ins by length only (no hold)
CFG = EndpointerConfig(window_s=STEP, speculative_s=0.25, backchannel_max_s=0.3)
HELD = dataclasses.replace(CFG, backchannel_max_s=0.6, check_pause_s=0.25)  # overlaps of 6 to 12 windows wait for their words

Frame = tuple[float, float, bool]  # (probability, window end time, agent speaking)


def frames(spec: str, step: float = STEP, start: int = 0) -> list[Frame]:
    """'0.9*10, 0.1*20!' -> 10 windows at 0.9 then 20 at 0.1 with the agent speaking ('!').
    Window i (0-based, counting from `start`) ends at (i + 1) * step."""
    out: list[Frame] = []
    for part in spec.split(","):
        part = part.strip()
        agent = part.endswith("!")
        prob, _, count = part.rstrip("!").partition("*")
        for _ in range(int(count or 1)):
            out.append((float(prob), (start + len(out) + 1) * step, agent))
    return out


def run(spec: str, config: EndpointerConfig = CFG, step: float = STEP) -> list[Event]:
    ep = Endpointer(config)
    return feed_all(ep, frames(spec, step))


def feed_all(ep: Endpointer, fs: Sequence[Frame]) -> list[Event]:
    events: list[Event] = []
    for prob, t, agent in fs:
        events += ep.feed(prob, t, agent_speaking=agent)
    return events


def norm(events: Sequence[Event]) -> list[Event]:
    """Round float fields so 0.1 + 0.2 style sums compare exactly."""
    return [
        dataclasses.replace(e, **{f.name: round(getattr(e, f.name), 6) for f in dataclasses.fields(e)
                                  if isinstance(getattr(e, f.name), float)})
        for e in events
    ]


CASES: list[tuple[str, str, list[Event]]] = [
    ("silence only", "0.1*20", []),
    ("below the speech threshold never starts", "0.45*20", []),
    ("short blip ignored", "0*2, 0.9*3, 0*5", [SpeechStarted(0.1), SpeechDiscarded(0.1, 0.25)]),
    ("a short run ends only after pending_gap_s of silence", "0.9*3, 0*1", [SpeechStarted(0.0)]),
    ("a gap shorter than pending_gap_s inside a short word does not split it", "0.9*2, 0.1, 0.9*2, 0*10", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.25), EndOfTurn(0.0, 0.25, 0.75, "silence"),
    ]),
    ("one window short of min_speech", "0.9*3, 0*5", [SpeechStarted(0.0), SpeechDiscarded(0.0, 0.15)]),
    ("exactly min_speech", "0.9*4, 0*12", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.2),
        EndOfTurn(0.0, 0.2, 0.7, "silence"),
    ]),
    ("normal turn", "0*4, 0.9*20, 0.1*15", [
        SpeechStarted(0.2), SpeechConfirmed(0.4), SpeculativeEndpoint(1.2),
        EndOfTurn(0.2, 1.2, 1.7, "silence"),
    ]),
    ("no endpoint before the delay", "0.9*10, 0.1*9", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.5),
    ]),
    ("hysteresis: between the thresholds keeps speech alive", "0.9*6, 0.4*10, 0.9*2, 0.1*12", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.9),
        EndOfTurn(0.0, 0.9, 1.4, "silence"),
    ]),
    ("hysteresis: between the thresholds does not resume speech", "0.9*6, 0.1*2, 0.4*10", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.3),
        EndOfTurn(0.0, 0.3, 0.8, "silence"),
    ]),
    ("hysteresis keeps a pending run alive", "0.6, 0.4*3, 0*3", [
        SpeechStarted(0.0), SpeechConfirmed(0.2),
    ]),
    ("exactly at the release threshold is still speech", "0.5, 0.35*5, 0.34*10", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.3),
        EndOfTurn(0.0, 0.3, 0.8, "silence"),
    ]),
    ("speculation, speech resumes, cancelled, then a later end", "0.9*6, 0.1*6, 0.9*4, 0.1*12", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.3), SpeculationCancelled(0.65),
        SpeculativeEndpoint(0.8), EndOfTurn(0.0, 0.8, 1.3, "silence"),
    ]),
    ("pause shorter than speculation: nothing", "0.9*6, 0.1*4, 0.9*4, 0.1*3", [
        SpeechStarted(0.0), SpeechConfirmed(0.2),
    ]),
    ("barge-in after barge_in_min_s, short: maybe a false alarm", "0.9*8!, 0.1*10", [
        SpeechStarted(0.0), SpeechConfirmed(0.3), BargeIn(0.0, 0.3), SpeculativeEndpoint(0.4),
        EndOfTurn(0.0, 0.4, 0.9, "silence", barge_in=True, possible_false_alarm=True),
    ]),
    ("long barge-in is not a false alarm", "0.1!, 0.9*25!, 0.9*5, 0.1*10", [
        SpeechStarted(0.05), SpeechConfirmed(0.35), BargeIn(0.05, 0.35), SpeculativeEndpoint(1.55),
        EndOfTurn(0.05, 1.55, 2.05, "silence", barge_in=True),
    ]),
    ("backchannel shorter than barge_in_min_s", "0.1*3!, 0.9*5!, 0.1*10!", [
        SpeechStarted(0.15), Backchannel(0.15, 0.4),
    ]),
    ("two backchannels are not added up", "0.9*4!, 0.1*2!, 0.9*4!, 0.1*2!", [
        SpeechStarted(0.0), Backchannel(0.0, 0.2), SpeechStarted(0.3), Backchannel(0.3, 0.5),
    ]),
    ("speech starts over the agent, agent stops: a normal turn", "0.9*2!, 0.9*3, 0.1*12", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.25),
        EndOfTurn(0.0, 0.25, 0.75, "silence"),
    ]),
    ("speech starts over the agent, agent stops, too short: backchannel", "0.9*2!, 0.9, 0.1*2", [
        SpeechStarted(0.0), Backchannel(0.0, 0.15),
    ]),
    ("agent starts during a confirmed turn: no barge-in", "0.9*6, 0.9*4!, 0.1*10", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.5),
        EndOfTurn(0.0, 0.5, 1.0, "silence"),
    ]),
]


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_timeline(spec: str, expected: list[Event]) -> None:
    assert norm(run(spec)) == norm(expected)


TUNED: list[tuple[str, dict[str, float], str, list[Event]]] = [
    ("max_turn cuts endless speech, the next turn opens", {"max_turn_s": 1.0}, "0.9*30", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), EndOfTurn(0.0, 1.0, 1.0, "max_turn"),
        SpeechStarted(1.0), SpeechConfirmed(1.2),
    ]),
    ("max_turn during a pause closes the speculation", {"max_turn_s": 1.0, "min_delay_s": 0.6},
     "0.9*14, 0.1*10", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.7),
        EndOfTurn(0.0, 0.7, 1.0, "max_turn"),
    ]),
    ("max_turn on resumed speech reports the cancellation first", {"max_turn_s": 1.0},
     "0.9*10, 0.1*9, 0.9", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.5), SpeculationCancelled(1.0),
        EndOfTurn(0.0, 1.0, 1.0, "max_turn"),
    ]),
    ("no speculation when it would not come before the end", {"speculative_s": 0.5},
     "0.9*6, 0.1*12", [SpeechStarted(0.0), SpeechConfirmed(0.2), EndOfTurn(0.0, 0.3, 0.8, "silence")]),
]


@pytest.mark.parametrize(("change", "spec", "expected"), [c[1:] for c in TUNED], ids=[c[0] for c in TUNED])
def test_tuned_timeline(change: dict[str, float], spec: str, expected: list[Event]) -> None:
    assert norm(run(spec, dataclasses.replace(CFG, **change))) == norm(expected)


def _speak(ep: Endpointer, windows: int = 10) -> list[Event]:
    return feed_all(ep, frames(f"0.9*{windows}"))


def _silence(ep: Endpointer, windows: int, after: int = 10) -> list[Event]:
    return feed_all(ep, frames(f"0.1*{windows}", start=after))


def test_hint_unfinished_waits_max_delay() -> None:
    ep = Endpointer(CFG)
    _speak(ep)
    ep.hint(likely_complete=False)
    assert ep.delay_s == CFG.max_delay_s
    events = _silence(ep, 30)
    assert norm(events) == norm([SpeculativeEndpoint(0.5), EndOfTurn(0.0, 0.5, 1.7, "silence", unfinished=True)])
    end = events[-1]
    assert isinstance(end, EndOfTurn) and end.latency_s == pytest.approx(1.2)


def test_the_words_of_a_pause_hold_that_pause_only() -> None:
    """The words up to a pause ("I want to") hold the turn open at that pause; speech resuming
    ends their say, and words about an earlier pause are ignored."""
    ep = Endpointer(CFG)
    _speak(ep)  # speech ends at 0.5
    assert norm(feed_all(ep, frames("0.1*5", start=10))) == [SpeculativeEndpoint(0.5)]
    ep.hint(likely_complete=False, t_speech_end=0.45)  # words of another pause: no effect
    assert ep.delay_s == CFG.min_delay_s
    ep.hint(likely_complete=False, t_speech_end=0.5)
    assert ep.delay_s == CFG.max_delay_s
    assert norm(feed_all(ep, frames("0.1*10", start=15))) == []  # 0.75 s of silence: still open
    feed_all(ep, frames("0.9*5", start=25))  # the caller goes on
    assert ep.delay_s == CFG.min_delay_s
    ep.hint(likely_complete=False, t_speech_end=0.5)  # late words of the old pause: ignored
    assert ep.delay_s == CFG.min_delay_s
    events = feed_all(ep, frames("0.1*20", start=30))
    assert isinstance(events[-1], EndOfTurn) and not events[-1].unfinished
    assert events[-1].latency_s == pytest.approx(CFG.min_delay_s, abs=CFG.window_s)


def test_hint_complete_again_ends_at_the_next_window() -> None:
    ep = Endpointer(CFG)
    _speak(ep)
    ep.hint(likely_complete=False)
    assert norm(_silence(ep, 15)) == [SpeculativeEndpoint(0.5)]  # 0.75 s of silence, still waiting
    ep.hint(likely_complete=True)
    assert norm(feed_all(ep, frames("0.1", start=25))) == norm([EndOfTurn(0.0, 0.5, 1.3, "silence")])


def test_hint_lasts_one_turn_and_is_ignored_when_idle() -> None:
    ep = Endpointer(CFG)
    ep.hint(likely_complete=False)  # idle: stale partial from a finished turn
    _speak(ep)
    assert ep.delay_s == CFG.min_delay_s
    ep.hint(likely_complete=False)
    assert isinstance(_silence(ep, 30)[-1], EndOfTurn)
    assert ep.delay_s == CFG.min_delay_s  # the next turn starts from "complete"


def test_long_pause_mode_applies_to_every_turn_until_disabled() -> None:
    ep = Endpointer(CFG)
    ep.set_long_pause(True)
    _speak(ep)
    ep.hint(likely_complete=True)
    assert norm(_silence(ep, 30)) == norm([SpeculativeEndpoint(0.5), EndOfTurn(0.0, 0.5, 1.7, "silence")])
    ep.set_long_pause(False)
    assert ep.delay_s == CFG.min_delay_s


@pytest.mark.parametrize(("delay", "windows"), [(0.5, 16), (0.512, 16), (0.513, 17), (1.2, 38)])
def test_latency_is_the_delay_rounded_up_to_a_32ms_window(delay: float, windows: int) -> None:
    cfg = EndpointerConfig(min_delay_s=delay, max_delay_s=max(delay, 1.2))
    events = run("0.9*20, 0.1*60", cfg, step=0.032)
    end = events[-1]
    assert isinstance(end, EndOfTurn)
    assert end.t_speech_end == pytest.approx(20 * 0.032)
    assert end.latency_s == pytest.approx(windows * 0.032)
    assert end.latency_s - delay < 0.032


def test_default_config_min_speech_and_barge_in_in_32ms_windows() -> None:
    # 0.20 s needs 7 windows (0.224 s); barge-in 0.30 s needs 10 (0.32 s).
    assert norm(run("0.9*7", EndpointerConfig(), 0.032))[-1] == SpeechConfirmed(0.224)
    assert norm(run("0.9*6, 0*4", EndpointerConfig(), 0.032))[-1] == SpeechDiscarded(0.0, 0.192)  # after pending_gap_s
    assert norm(run("0.9*10!", EndpointerConfig(), 0.032))[-1] == OverlapHeld(0.0, 0.224)  # held from min_speech_s
    assert norm(run("0.9*38!", EndpointerConfig(), 0.032))[-1] == BargeIn(0.0, 1.216)  # backchannel_max_s 1.2
    assert norm(run("0.9*6!, 0*4!", EndpointerConfig(), 0.032))[-1] == Backchannel(0.0, 0.192)
    no_hold = EndpointerConfig(backchannel_max_s=0.3)
    assert norm(run("0.9*10!", no_hold, 0.032))[-1] == BargeIn(0.0, 0.32)
    assert norm(run("0.9*9!, 0*4!", no_hold, 0.032))[-1] == Backchannel(0.0, 0.288)


HELD_CASES: list[tuple[str, str, list[Event]]] = [
    ("an overlap as long as a turn is held for its words", "0.9*8!, 0.1*10!", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), OverlapHeld(0.0, 0.2), SpeculativeEndpoint(0.4),
        EndOfTurn(0.0, 0.4, 0.9, "silence", barge_in=True, possible_false_alarm=True),
    ]),
    ("a held overlap that reaches backchannel_max_s is a barge-in by its length", "0.9*14!, 0.1*10", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), OverlapHeld(0.0, 0.2), BargeIn(0.0, 0.6), SpeculativeEndpoint(0.7),
        EndOfTurn(0.0, 0.7, 1.2, "silence", barge_in=True, possible_false_alarm=True),
    ]),
    ("shorter than min_speech_s is a backchannel without words", "0.9*3!, 0.1*2!", [
        SpeechStarted(0.0), Backchannel(0.0, 0.15),
    ]),
    ("'st-op': a closure inside one word over the agent is still one held overlap", "0.9*3!, 0.1!, 0.9*3!, 0.1*3!", [
        SpeechStarted(0.0), SpeechConfirmed(0.25), OverlapHeld(0.0, 0.25),
    ]),
    ("the agent silent: nothing is held", "0.9*8, 0.1*10", [
        SpeechStarted(0.0), SpeechConfirmed(0.2), SpeculativeEndpoint(0.4), EndOfTurn(0.0, 0.4, 0.9, "silence"),
    ]),
]


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in HELD_CASES], ids=[c[0] for c in HELD_CASES])
def test_held_timeline(spec: str, expected: list[Event]) -> None:
    assert norm(run(spec, HELD)) == norm(expected)


def test_held_speech_is_judged_at_a_longer_pause_than_a_turn_speculates_at() -> None:
    """A closure inside "st-op" can outlast `speculative_s`: a turn only throws that work away,
    but held speech would be judged (and the agent resumed) on half a word."""
    cfg = dataclasses.replace(HELD, speculative_s=0.1, check_pause_s=0.2)
    gap = "0.9*8{a}, 0.1*3{a}, 0.9*2{a}, 0.1*5{a}"  # a 0.15 s gap inside the speech, then a 0.25 s pause
    turn = norm(run(gap.format(a=""), cfg))
    assert [e for e in turn if isinstance(e, (SpeculativeEndpoint, SpeculationCancelled))] == norm(
        [SpeculativeEndpoint(0.4), SpeculationCancelled(0.6), SpeculativeEndpoint(0.65)])
    held = norm(run(gap.format(a="!"), cfg))
    assert OverlapHeld in {type(e) for e in held}
    assert [e for e in held if isinstance(e, (SpeculativeEndpoint, SpeculationCancelled))] == norm([SpeculativeEndpoint(0.65)])


def test_dismissed_overlap_is_no_turn_and_the_next_speech_starts_afresh() -> None:
    ep = Endpointer(HELD)
    feed_all(ep, frames("0.9*8!, 0.1*5!"))
    assert ep.held and ep.in_turn
    assert norm([ep.dismiss()]) == [Backchannel(0.0, 0.4)]  # type: ignore[list-item]
    assert not ep.held and not ep.in_turn and ep.dismiss() is None and ep.confirm() is None
    assert feed_all(ep, frames("0.1*20!", start=13)) == []
    assert norm(feed_all(ep, frames("0.9*2!", start=33))) == [SpeechStarted(1.65)]


def test_confirmed_overlap_is_a_barge_in_and_its_turn_ends_as_usual() -> None:
    ep = Endpointer(HELD)
    feed_all(ep, frames("0.9*8!, 0.1*5!"))
    assert norm([ep.confirm()]) == [BargeIn(0.0, 0.65)]  # type: ignore[list-item]
    assert not ep.held and ep.confirm() is None and ep.dismiss() is None
    assert norm(feed_all(ep, frames("0.1*5", start=13))) == [EndOfTurn(0.0, 0.4, 0.9, "silence", barge_in=True, possible_false_alarm=True)]


def test_speech_start_is_not_before_the_previous_window_end() -> None:
    # Windows fed 20 ms apart with a 32 ms window setting: start clamps to the silent window's end.
    ep = Endpointer(CFG)
    ep.feed(0.0, 1.00, agent_speaking=False)
    assert ep.feed(0.9, 1.02, agent_speaking=False) == [SpeechStarted(1.00)]


def test_reset_drops_the_open_turn() -> None:
    ep = Endpointer(CFG)
    _speak(ep)
    assert ep.in_turn
    ep.reset()
    assert not ep.in_turn
    assert _silence(ep, 30) == []
    ep.reset()
    assert ep.feed(0.9, 0.0, agent_speaking=False) == [SpeechStarted(-0.05)]  # time may restart


@pytest.mark.parametrize("prob", [-0.1, 1.5, float("nan")])
def test_bad_probability_is_rejected(prob: float) -> None:
    with pytest.raises(ValueError, match="probability"):
        Endpointer().feed(prob, 0.032, agent_speaking=False)


def test_time_going_backwards_is_rejected() -> None:
    ep = Endpointer()
    ep.feed(0.1, 1.0, agent_speaking=False)
    with pytest.raises(ValueError, match="backwards"):
        ep.feed(0.1, 0.9, agent_speaking=False)


def test_rounding_jitter_in_window_times_is_tolerated() -> None:
    ep = Endpointer(CFG)
    _speak(ep)
    assert ep.feed(0.1, 0.5 - 1e-9, agent_speaking=False) == []
    assert norm(_silence(ep, 10)) == norm([SpeculativeEndpoint(0.5), EndOfTurn(0.0, 0.5, 1.0, "silence")])


@pytest.mark.parametrize("change", [
    {"release_threshold": 0.6}, {"speech_threshold": 1.5}, {"min_delay_s": 2.0}, {"window_s": 0.0},
    {"min_speech_s": -1.0},
])
def test_inconsistent_config_is_rejected(change: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(CFG, **change)


# --- property: any input gives a well-formed event stream -------------------------------------

_NEXT: dict[str, dict[type, str]] = {
    "idle": {SpeechStarted: "pending"},
    "pending": {SpeechDiscarded: "idle", Backchannel: "idle", SpeechConfirmed: "turn"},
    "turn": {OverlapHeld: "turn", BargeIn: "turn", SpeculativeEndpoint: "speculating", EndOfTurn: "idle"},
    "speculating": {SpeculationCancelled: "turn", EndOfTurn: "idle"},
}


# The moment each event is about: these never go backwards.
_WHEN = {
    SpeechStarted: "t_start", SpeechConfirmed: "t", OverlapHeld: "t", BargeIn: "t_confirmed", SpeculativeEndpoint: "t_speech_end",
    SpeculationCancelled: "t", EndOfTurn: "t_decided", SpeechDiscarded: "t_end", Backchannel: "t_end",
}


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.2, 0.34, 0.35, 0.45, 0.5, 0.7, 1.0]) | st.floats(0.0, 1.0),
            st.booleans(),
            st.sampled_from([None, None, None, True, False]),
        ),
        max_size=400,
    ),
    max_turn=st.sampled_from([0.6, 30.0]),
    long_pause=st.booleans(),
    held=st.booleans(),
)
def test_events_are_well_ordered(
    steps: list[tuple[float, bool, bool | None]], max_turn: float, long_pause: bool, held: bool
) -> None:
    cfg = dataclasses.replace(HELD if held else CFG, max_turn_s=max_turn)
    ep = Endpointer(cfg)
    ep.set_long_pause(long_pause)
    state, last, start, prev = "idle", float("-inf"), 0.0, None
    for i, (prob, agent, hint) in enumerate(steps):
        if hint is not None:
            ep.hint(hint)
        t = (i + 1) * STEP
        for e in ep.feed(prob, t, agent_speaking=agent):
            assert type(e) in _NEXT[state], f"{type(e).__name__} in state {state}"
            state = _NEXT[state][type(e)]
            when = getattr(e, _WHEN[type(e)])
            assert last - 1e-9 <= when <= t + 1e-9
            last = when
            if isinstance(e, SpeechStarted):
                start = e.t_start
            if isinstance(e, OverlapHeld):
                assert held and agent and prev == SpeechConfirmed(t)  # at confirmation, over the agent
                assert e.t_speech_start == start and cfg.min_speech_s - 1e-9 <= e.t - start < cfg.backchannel_max_s
            if isinstance(e, BargeIn) and not held:
                assert agent and prev == SpeechConfirmed(t)  # only at confirmation, over the agent
                assert e.t_speech_start == start and e.t_confirmed - start >= cfg.barge_in_min_s - 1e-9
            if isinstance(e, BargeIn) and held:  # over the agent for longer than an acknowledgement
                assert e.t_speech_start == start and e.t_confirmed - start >= cfg.backchannel_max_s - 1e-9
            if isinstance(e, (SpeechDiscarded, Backchannel)):
                assert e.t_start == start and e.t_end - start < (cfg.min_speech_s if held else cfg.barge_in_min_s)
            if isinstance(e, EndOfTurn):
                assert e.t_speech_start == start <= e.t_speech_end <= e.t_decided
                if e.reason == "silence":
                    assert e.latency_s >= cfg.min_delay_s - 1e-9
                    assert e.latency_s < ep.config.max_delay_s + STEP
                else:
                    assert e.t_decided - start >= max_turn - 1e-9
            prev = e
        assert ep.in_turn == (state in ("turn", "speculating"))
        assert ep.idle == (state == "idle")  # CallerAudio trims its buffer only then
