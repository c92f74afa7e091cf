"""Words that stop mid-sentence at a pause (phoneagent/dialog/unfinished.py)."""

from __future__ import annotations

import pytest

from phoneagent.dialog.unfinished import sounds_unfinished


@pytest.mark.parametrize("text", [
    "I want to", "I want to...", "I'd like to", "It's about the invoice from", "The problem is",
    "I need to change the address,", "My name is, um", "My name is, um.", "It's the", "I called because",
    "Can you check my order and", "Ich möchte...",
])
def test_stops_mid_sentence(text: str) -> None:
    assert sounds_unfinished(text)


@pytest.mark.parametrize("text", [
    "", "   ", "Yes.", "No, thanks.", "I'd like to.",  # whisper's full stop after a word that can end a sentence
    "That's what I'm calling about.", "Where are you from?", "And?", "My order number is 45.",
    "My order number is 45", "Can you check", "I can do that", "Tuesday works for me.",
    "My order number is 45, 7 to...", "for 5. 7 to",  # whisper's "to" for the "two" ending a number (bench/turn_end.py)
])
def test_may_be_finished(text: str) -> None:
    assert not sounds_unfinished(text)


def test_a_language_without_a_list_has_no_opinion_but_a_trailing_ellipsis_still_counts() -> None:
    assert not sounds_unfinished("Je voudrais le", "fr")
    assert sounds_unfinished("Je voudrais...", "fr")
    assert sounds_unfinished("I want to", "en-GB")
