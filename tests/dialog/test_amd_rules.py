"""AMD timelines: observations in seconds since answer -> exactly one decision by 3 s."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoneagent.dialog.amd.rules import AmdConfig, AmdDecision, AmdDetector, normalize_words

Obs = tuple[float, str, str]  # (seconds since answer, "start" | "end" | "text" | "beep" | "poll", text)


def speech(*segments: tuple[float, float]) -> list[Obs]:
    return [o for a, b in segments for o in ((a, "start", ""), (b, "end", ""))]


def text(words: str, t: float) -> Obs:
    return (t, "text", words)


def beep(t: float) -> Obs:
    return (t, "beep", "")


def play(obs: Sequence[Obs], until: float = 3.0, step: float = 0.05,
         config: AmdConfig | None = None) -> tuple[AmdDecision | None, float | None]:
    """Feed the observations in time order while polling every `step` s like the call flow (a
    poll comes after the observations at its instant). Returns the decision and the time of
    the poll that reported it."""
    det = AmdDetector(config)
    polls: list[Obs] = [(round(k * step, 9), "poll", "") for k in range(int(until / step) + 1)]
    found: tuple[AmdDecision | None, float | None] = (None, None)
    for t, kind, words in sorted([*obs, *polls], key=lambda o: (o[0], o[1] == "poll")):
        if kind == "start":
            det.speech_start(t)
        elif kind == "end":
            det.speech_end(t)
        elif kind == "text":
            det.transcript(words, t)
        elif kind == "beep":
            det.beep(t)
        else:
            d = det.poll(t)
            if d is not None:
                assert found == (None, None), "decided twice"
                found = (d, t)
    return found


def approx(d: AmdDecision | None) -> tuple[str, str, float] | None:
    return None if d is None else (d.kind, d.reason, round(d.at_s, 6))


def test_human_hello_then_silence() -> None:
    d, polled = play(speech((0.5, 1.1)))
    assert approx(d) == ("human", "short greeting then silence", 1.8)
    assert polled == pytest.approx(1.8)


def test_human_who_talks_longer_decides_at_the_deadline() -> None:
    """ "Hello, this is Anna speaking" 0.4-2.0 s, words 0.15 s apart: one 1.6 s greeting, too long
    for the short-greeting rule, too short for a machine, 1.3 s of speech in all. No machine cue
    by 3 s -> human, decided at the deadline."""
    words = speech((0.4, 0.8), (0.95, 1.3), (1.45, 2.0))
    assert approx(play(words)[0]) == ("human", "no machine cue", 3.0)


def test_human_who_keeps_talking_past_the_long_greeting_is_taken_for_a_machine() -> None:
    """The rules' known false positive: a human greeting of more than 1.8 s without a pause."""
    words = speech((0.4, 0.8), (0.95, 1.3), (1.45, 2.0), (2.15, 2.8))
    assert approx(play(words)[0]) == ("machine", "long greeting", 2.2)


def test_human_second_hello_after_a_pause() -> None:
    """ "Hello?" ... "Hello?": each greeting is short; the silence after the second decides."""
    d, _ = play(speech((0.3, 0.8), (1.2, 1.7)))
    assert approx(d) == ("human", "short greeting then silence", 2.4)


def voicemail_6s() -> list[Obs]:
    """6 s greeting from 0.3 s: sentences of words 0.15 s apart, 0.4 s pauses between them."""
    sentences = [(0.3, 2.5), (2.9, 4.7), (5.1, 6.3)]
    out: list[Obs] = []
    for a, b in sentences:
        t = a
        while t < b - 1e-9:
            out += speech((t, min(t + 0.35, b)))
            t += 0.5
    return out


def test_voicemail_long_greeting() -> None:
    d, polled = play(voicemail_6s(), until=7.0)
    assert approx(d) == ("machine", "long greeting", 2.1)
    assert polled is not None and polled <= 2.2


def test_voicemail_by_phrase() -> None:
    obs = speech((0.2, 3.0)) + [text("Hi", 0.8), text("Hi you've", 1.0), text("Hi, you've reached", 1.2)]
    d, polled = play(obs, config=AmdConfig(long_greeting_s=2.5, max_human_speech_s=2.6))
    assert approx(d) == ("machine", "phrase: you've reached", 1.2)
    assert polled == pytest.approx(1.2)


@pytest.mark.parametrize(("words", "phrase"), [
    ("Sorry, I CAN\u2019T take your call!", "can't take your call"),
    ("please leave   a\tmessage", "leave a message"),
    ("This is the VOICE-MAIL of Bob", "voice mail"),
    ("Your call has been forwarded to an automatic voice message system. mailbox 42", "mailbox"),
])
def test_phrase_normalisation(words: str, phrase: str) -> None:
    det = AmdDetector()
    det.transcript(words, 0.5)
    assert det.poll(0.5) == AmdDecision("machine", f"phrase: {phrase}", 0.5)


@pytest.mark.parametrize("words", ["Hello?", "Yes, I can take your call", "Anna speaking", "voicemails", ""])
def test_ordinary_words_are_not_phrases(words: str) -> None:
    det = AmdDetector()
    det.transcript(words, 0.5)
    assert det.poll(0.6) is None


def test_phrases_match_whole_words() -> None:
    det = AmdDetector(AmdConfig(voicemail_phrases=("tone",)))
    det.transcript("a stone", 0.5)
    assert det.poll(0.5) is None
    det.transcript("a stone, the tone", 0.7)
    assert det.decision == AmdDecision("machine", "phrase: tone", 0.7)


def test_normalize_words() -> None:
    assert normalize_words("  You\u2019ve REACHED: Anna's phone...  ") == "youve reached annas phone"


def test_beep_only() -> None:
    assert approx(play([beep(0.8)])[0]) == ("machine", "beep", 0.8)


def test_silence_only_is_unknown_at_the_deadline() -> None:
    det = AmdDetector()
    assert det.poll(0.0) is None
    assert det.poll(2.99) is None
    assert det.poll(3.0) == AmdDecision("unknown", "silence", 3.0)
    assert det.poll(3.1) is None
    assert det.decision == AmdDecision("unknown", "silence", 3.0)


def test_words_without_vad_speech_count_as_heard() -> None:
    det = AmdDetector()
    det.transcript("hm", 1.0)
    assert det.poll(3.0) == AmdDecision("human", "no machine cue", 3.0)


def test_total_speech_across_sentence_pauses() -> None:
    """1.1 s phrases 0.4 s apart: no greeting is long, but 2.2 s of speech is reached."""
    d, _ = play(speech((0.0, 1.1), (1.5, 2.8)))
    assert approx(d) == ("machine", "total speech", 2.6)


def test_greeting_resumed_after_a_short_pause_fires_on_resume() -> None:
    """Speech 0.2-1.9 (1.7 s) pauses 0.3 s (< word_gap_s): the greeting goes on, already past
    1.8 s, so "long greeting" fires when speech resumes, not back at 2.0 s."""
    det = AmdDetector()
    det.speech_start(0.2)
    det.speech_end(1.9)
    assert det.poll(2.1) is None
    det.speech_start(2.2)
    assert det.decision == AmdDecision("machine", "long greeting", 2.2)


def test_pause_of_word_gap_splits_the_greeting() -> None:
    det = AmdDetector()
    det.speech_start(0.2)
    det.speech_end(1.9)
    det.speech_start(2.25)  # 0.35 s pause: a new greeting
    det.speech_end(2.5)  # 1.95 s of speech in all
    assert det.poll(2.9) is None
    assert det.poll(3.0) == AmdDecision("human", "no machine cue", 3.0)


def test_medium_greeting_then_silence_waits_for_the_deadline() -> None:
    """1.6 s greeting: longer than a human's "Hello?", so silence after it proves nothing."""
    assert approx(play(speech((0.2, 1.8)))[0]) == ("human", "no machine cue", 3.0)


def test_timers_beat_an_observation_at_the_same_instant() -> None:
    det = AmdDetector()
    det.speech_start(0.5)
    det.speech_end(1.1)
    det.beep(1.8)  # the human timer is due at 1.8 too
    assert approx(det.poll(1.8)) == ("human", "short greeting then silence", 1.8)
    det2 = AmdDetector()
    det2.beep(3.0)
    assert det2.decision == AmdDecision("unknown", "silence", 3.0)


def test_observations_after_the_deadline_do_not_change_the_decision() -> None:
    det = AmdDetector()
    det.speech_start(0.2)
    det.speech_end(1.8)
    det.beep(3.5)  # nobody polled at 3.0, but the deadline came first
    assert det.poll(3.5) == AmdDecision("human", "no machine cue", 3.0)


def test_observations_after_a_decision_are_ignored_but_time_is_checked() -> None:
    det = AmdDetector()
    det.beep(0.5)
    det.speech_end(0.6)  # unpaired, ignored once decided
    det.transcript("leave a message", 0.7)
    assert det.poll(0.8) == AmdDecision("machine", "beep", 0.5)
    with pytest.raises(ValueError, match="backwards"):
        det.beep(0.1)


def test_bad_observations() -> None:
    det = AmdDetector()
    with pytest.raises(ValueError, match="speech_end at 0.2 without speech_start"):
        det.speech_end(0.2)
    det.speech_start(0.3)
    with pytest.raises(ValueError, match="speech already started at 0.3"):
        det.speech_start(0.4)
    with pytest.raises(ValueError, match=r"time must not go backwards: 0.1 after 0.4"):
        det.poll(0.1)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number >= 0"):
            AmdDetector().beep(bad)
    with pytest.raises(ValueError, match="transcript must be a string"):
        det.transcript(None, 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "match"), [
    ({"decide_within_s": 0.0}, "decide_within_s must be > 0"),
    ({"word_gap_s": float("nan")}, "word_gap_s must be > 0"),
    ({"long_greeting_s": -1.0}, "long_greeting_s must be > 0"),
    ({"human_max_greeting_s": 2.0}, r"human_max_greeting_s \(2.0\) must be <= long_greeting_s \(1.8\)"),
    ({"silence_after_greeting_s": 0.3}, r"must be > word_gap_s \(0.35\)"),
    ({"voicemail_phrases": ("ok", " ?! ")}, "voicemail phrase ' \\?! ' has no words"),
    ({"voicemail_phrases": "voicemail"}, "tuple of phrases, not one string"),
])
def test_bad_config(change: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(AmdConfig(), **change)  # type: ignore[arg-type]


# --- random timelines ------------------------------------------------------------------------

_TEXTS = ["hello", "hi this is", "please leave a message", "you've reached anna", "yes", ""]
_event = st.tuples(
    st.floats(0.0, 0.8),  # gap since the previous observation
    st.sampled_from(["toggle", "toggle", "toggle", "text", "beep", "wait"]),
    st.sampled_from(_TEXTS),
)


def _replay(events: list[tuple[float, str, str]],
            poll_every: bool) -> tuple[AmdDetector, list[tuple[float, AmdDecision]]]:
    """Replay (gap, kind, words) steps; poll after each step or only at the end."""
    det = AmdDetector()
    reported: list[tuple[float, AmdDecision]] = []
    t, speaking = 0.0, False

    def poll(now: float) -> None:
        d = det.poll(now)
        if d is not None:
            reported.append((now, d))

    for gap, kind, words in events:
        t += gap
        if kind == "toggle":
            (det.speech_end if speaking else det.speech_start)(t)
            speaking = not speaking
        elif kind == "text":
            det.transcript(words, t)
        elif kind == "beep":
            det.beep(t)
        if poll_every:
            poll(t)
    poll(max(t, 3.0))
    return det, reported


@given(st.lists(_event, max_size=40))
def test_random_timelines_decide_once_by_the_deadline(events: list[tuple[float, str, str]]) -> None:
    det, reported = _replay(events, poll_every=True)
    assert len(reported) == 1, "poll at max(t, 3.0) must decide, and only once"
    polled_at, d = reported[0]
    assert det.decision == d
    assert 0.0 <= d.at_s <= 3.0
    assert d.at_s <= polled_at + 1e-9
    assert (d.kind == "unknown") == (d.reason == "silence")
    _, lazy_reported = _replay(events, poll_every=False)
    assert [r[1] for r in lazy_reported] == [d], "the decision must not depend on how often poll() runs"


@given(st.lists(_event, max_size=40), st.floats(0.0, 3.0))
def test_decided_no_later_than_the_deadline(events: list[tuple[float, str, str]], first_poll: float) -> None:
    """However the observations fall, a poll at decide_within_s has the answer."""
    det = AmdDetector()
    t, speaking = 0.0, False
    for gap, kind, words in events:
        if t + gap > 3.0:
            break
        t += gap
        if kind == "toggle":
            (det.speech_end if speaking else det.speech_start)(t)
            speaking = not speaking
        elif kind == "text":
            det.transcript(words, t)
        elif kind == "beep":
            det.beep(t)
    early = det.poll(max(t, first_poll))
    late = det.poll(3.0)
    assert (early is None) != (late is None)
    assert det.decision is not None and det.decision.at_s <= 3.0
