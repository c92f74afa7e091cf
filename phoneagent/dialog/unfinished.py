"""Does what the caller said so far stop where no sentence ends ("I want to", "the invoice
from", "um")? Decided from the words, per language, at a pause.

At each short pause the dialog transcribes the turn so far anyway (the speculative reply); when
those words end on a word no sentence ends with, the endpointer waits `max_delay_s` instead of
`min_delay_s` for the caller to go on. Only words that cannot end a sentence count (articles,
possessives, conjunctions, hesitations; "to", "from", "is" when no full stop follows), plus a
trailing "..." or comma; "my number is four five" and "can you check" look finished and still
end after the usual silence.
Measured in bench/turn_end.py (phone-channel espeak-ng turns with pauses inside, whisper tiny.en).
"""

from __future__ import annotations

import re

# Per language: words no sentence ends with (articles, possessives, conjunctions, hesitations),
# whatever punctuation the recogniser put after them; and words that end a sentence only now and
# then ("I'd like to.", "That's what I'm calling about."), which count only when the recogniser
# put no full stop after them ("I want to", "the invoice from"). A "?" always ends the turn.
_NEVER_LAST: dict[str, frozenset[str]] = {
    "en": frozenset(("a", "an", "the", "my", "your", "our", "their", "and", "or", "but", "nor", "because", "than",
                     "um", "uh", "er", "erm", "uhm")),
}
_OPEN_LAST: dict[str, frozenset[str]] = {
    "en": frozenset(("to", "of", "from", "with", "for", "at", "about", "into", "is", "are", "was", "were")),
}
_TRAILING = ("...", "\u2026", ",", "-", "\u2013", "\u2014", ":")


def sounds_unfinished(text: str, language: str = "en") -> bool:
    """True when `text` stops mid-sentence by its last word or punctuation; False when it may
    be finished, when it is empty, and in a language without a list."""
    stripped = text.strip()
    if not stripped or stripped.endswith("?"):
        return False
    lang = language.split("-")[0].lower()
    words = re.findall(r"[\w']+", stripped.lower())
    if lang == "en" and len(words) >= 2 and words[-1] in ("to", "too") and words[-2].isdigit():
        return False  # a digit string's last "two", which whisper writes "to" ("45, 7 to...")
    if stripped.endswith(_TRAILING):
        return True
    if not words or lang not in _NEVER_LAST:
        return False
    if words[-1] in _NEVER_LAST[lang]:
        return True
    return stripped[-1] not in ".!" and words[-1] in _OPEN_LAST[lang]
