"""Is what the caller said over the agent an acknowledgement ("mm-hmm", "yeah", "okay") or an
interruption ("no", "wait", "stop")? Decided from the words, per language.

Speech over the agent that is too short to be a turn was always a backchannel; speech long
enough to be a barge-in but short enough to be an acknowledgement (0.3 to ~1.2 s) holds the
agent while its words are transcribed, and only these words let it carry on. Anything else,
including any word that is not an acknowledgement ("okay, no"), interrupts.

Measured on espeak-ng voices through G.711 with whisper tiny.en (bench/backchannels.py): plain
decoding with no words counted as an interruption missed no interruption (150/150) and kept
100/150 acknowledgements; judging an empty transcript by the words whisper withheld as "not
speech" (most of espeak's "uh huh") and taking "and" as a hum raised that to 119/150, still
missing none. A decoder prompt of acknowledgements kept more of them but made whisper hear
"excuse me" and "that's wrong" as "Mm-hmm.", so it is not used. Whisper writes the hum of
"mm-hmm" as "Mm-mm", "M" or "and" often enough that those count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from models.base import Transcript

# Each entry is one acknowledgement; an utterance is one if it is made of them only.
_PHRASES: dict[str, tuple[str, ...]] = {
    # "and": whisper's reading of a hum ("mm hmm" -> "and", "and Mm."); no interruption in
    # bench/backchannels.py is heard as it, and words after it are a new overlap, checked anew.
    "en": ("mm hmm", "mhm", "m", "mm", "mmm", "hmm", "mm mm", "uh huh", "uh hum", "uh", "um", "ah", "aha", "oh", "and", "yeah",
           "yes", "yep", "yup", "ok", "okay", "alright", "all right", "right", "sure", "i see", "got it", "cool", "fine",
           "great", "good", "sounds good", "of course", "exactly", "true", "indeed"),
    "es": ("sí", "si", "vale", "ajá", "aja", "mm", "claro", "ya", "bueno", "de acuerdo", "entiendo", "ok", "okay", "exacto"),
    "fr": ("oui", "ouais", "d'accord", "ok", "okay", "mm", "hum", "ah", "je vois", "bien sûr", "exactement", "voilà"),
    "de": ("ja", "jaja", "genau", "okay", "ok", "mhm", "mm", "hm", "aha", "alles klar", "richtig", "stimmt", "gut", "klar"),
}

MAX_WORDS = 4  # "yeah okay sure" is an acknowledgement; a sentence is not


def words(text: str) -> list[str]:
    """Lower-case words, with hyphens and apostrophes inside words kept as spaces or letters as
    whisper writes them ("Mm-hmm." -> ["mm", "hmm"], "d'accord" stays one word)."""
    return re.findall(r"\w+(?:'\w+)?", text.lower().replace("-", " "))


def _vocabulary(language: str, extra: Iterable[str]) -> set[tuple[str, ...]]:
    base = _PHRASES.get(language.split("-")[0].lower(), ())
    return {tuple(words(p)) for p in (*base, *extra) if words(p)}


def is_backchannel(text: str, language: str = "en", extra: Iterable[str] = ()) -> bool:
    """True when `text` is only acknowledgements ("Yeah, okay.", "Mm-hmm."); False for any other
    word, for no words at all, and in a language without a list."""
    said = words(text)
    if not said or len(said) > MAX_WORDS:
        return False
    phrases = _vocabulary(language, extra)
    longest = max((len(p) for p in phrases), default=0)
    i = 0
    while i < len(said):  # greedy, longest phrase first: "all right" before "all"
        for n in range(min(longest, len(said) - i), 0, -1):
            if tuple(said[i:i + n]) in phrases:
                i += n
                break
        else:
            return False
    return True


def acknowledged(tr: Transcript | None, seconds: float, *, language: str, extra: Iterable[str],
                 barge_in_min_s: float) -> bool:
    """The dialog's decision on held speech of `seconds`: only acknowledgements, or a wordless
    sound too short to interrupt (`barge_in_min_s`). With no words, what the recogniser withheld
    as "not speech" still counts when it is only acknowledgements: the VAD heard speech, and
    whisper blanks most of espeak's "uh huh" that way (bench/backchannels.py; no interruption
    there was withheld as one). Otherwise a longer sound with no words interrupts: whisper hears
    some short "no"s and "sorry"s as nothing, and a cough that did is resumed by the false-alarm
    path. No transcript (STT failed): the caller did talk over the agent. No defaults: the
    agent's language, extra phrases and endpointer setting are the one source of each."""
    if tr is None:
        return False
    if not tr.normalized.strip():
        if tr.withheld and is_backchannel(tr.withheld, language, extra):
            return True
        return seconds < barge_in_min_s
    return is_backchannel(tr.normalized, language, extra)
