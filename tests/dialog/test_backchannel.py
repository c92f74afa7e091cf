"""Acknowledgement or interruption, from the words whisper wrote."""

from __future__ import annotations

import pytest

from phoneagent.dialog.backchannel import is_backchannel, words


@pytest.mark.parametrize("text", ["Mm-hmm.", "Uh-huh.", "Yeah.", "Okay.", "Right.", "Yeah, yeah.", "Okay, sure.",
                                  "Oh, yeah.", "I see.", "All right.", "Mm-mm.", "M", "Got it.", "and", "and Mm.", "Uh uh."])
def test_english_acknowledgements(text: str) -> None:
    assert is_backchannel(text, "en")


@pytest.mark.parametrize("text", ["No.", "Stop.", "Wait.", "No, no.", "Hold on.", "What?", "Sorry.", "Excuse me.",
                                  "Okay, no.", "Yeah but my order", "yeah yeah yeah yeah yeah", "", "...", "Oh no.", "and then term."])
def test_anything_else_interrupts(text: str) -> None:
    assert not is_backchannel(text, "en")


def test_other_languages_and_extra_phrases() -> None:
    assert is_backchannel("Sí, vale.", "es") and not is_backchannel("No, espera.", "es")
    assert is_backchannel("D'accord.", "fr-FR") and is_backchannel("Ja genau.", "de")
    assert not is_backchannel("Gotcha.", "en") and is_backchannel("Gotcha.", "en", extra=("gotcha",))
    assert not is_backchannel("Okay.", "xx")  # a language without a list: every word interrupts


def test_words() -> None:
    assert words("Mm-hmm. Uh-huh, d'accord!") == ["mm", "hmm", "uh", "huh", "d'accord"]
