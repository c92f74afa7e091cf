"""Values a contact centre lives on (phone and account numbers, emails, dates, amounts) as the dialog captures
them from speech: what the recogniser is told to expect, how its words become the value, how the
value is read back so a caller can check it by ear, and how a correction of one part is merged.

Pure functions, no dialog state: phoneagent/dialog/capture.py runs the ask -> read back ->
confirm or repair exchange. A tool parameter becomes a slot with "x-slot" in the agent file:

    phone: {type: string, x-slot: phone}           # 7-15 digits
    account: {type: string, pattern: "^[0-9]{8}$", x-slot: digits}
    email: {type: string, x-slot: email}
    delivery_date: {type: string, x-slot: date}               # ISO 8601: 2027-03-05
    refund: {type: string, x-slot: amount, x-currency: USD}  # "42.50", read back in dollars and cents
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from models.normalize import UNITS, normalize_emails, normalize_transcript
from phoneagent.dialog.spoken_values import CURRENCY_WORDS, corrected_date, say_amount, say_date, spoken_amount, spoken_date

SlotKind = Literal["digits", "phone", "email", "date", "amount"]
KINDS: tuple[SlotKind, ...] = ("digits", "phone", "email", "date", "amount")

# What whisper is told came before the caller's words (its "previous text"): an example in the
# form we want back. Measured in bench/telephone_stt.py (the slot rows) and bench/value_slots.py.
# An email gets two: callers say it in words ("john dot smith at ...") or spell it, and each prompt
# pulls whisper toward its own form (spelled: "J-O-H-N", words: "john"); the surer text wins.
STT_PROMPTS: dict[SlotKind, tuple[str, ...]] = {
    "digits": ("4 7 2, 9 1 8, 3 5.",),
    "phone": ("5 5 5, 2 3 4, 9 8 7 6.",),
    "email": ("john dot smith at example dot com", "J-O-H-N dot S-M-I-T-H at gmail dot com."),
    "date": ("On Friday, March 5th, 2027.",),
    "amount": ("Forty-two dollars and fifty cents.",),  # words: "$42.50." pulled answers to ".50" (bench.value_slots)
}
_DIGIT_WORDS = frozenset("zero oh o one two three four five six seven eight nine double triple".split())
# Digit words as whisper writes them after the phone band took their high frequencies ("five"
# loses its f: "time"): read as digits only between digits, in a slot that expects digits.
_SOUNDALIKES = {"oh": "zero", "o": "zero", "time": "five", "times": "five", "fine": "five", "vive": "five",
                "to": "two", "too": "two", "for": "four", "fore": "four", "won": "one", "ate": "eight",
                "tree": "three", "free": "three", "sex": "six", "nein": "nine"}
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_LENGTH_RE = re.compile(r"\[0-9\]\{(\d+)(?:,(\d+))?\}|\\d\{(\d+)(?:,(\d+))?\}")
_TLDS = frozenset("com org net edu gov io co uk de fr es us ca au info biz".split())
_YES_RE = re.compile(r"^(?:yes|yeah|yep|yup|correct|right|that'?s (?:right|correct|it)|that is (?:right|correct)|exactly|"
                     r"sure|affirmative|uh[- ]?huh|mm[- ]?hmm|it is|perfect)\b", re.IGNORECASE)
_NO_RE = re.compile(r"^(?:no|nope|nah|wrong|incorrect|not (?:quite|right|correct)|that'?s (?:wrong|not (?:right|correct|it))|"
                    r"that is (?:wrong|not (?:right|correct))|actually)\b", re.IGNORECASE)
_KEYPAD_RE = re.compile(r"^\(keypad\)\s*([0-9A-D*#]*)$")
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_AMOUNT_RE = re.compile(r"\d{1,12}\.\d{2}")


@dataclass(frozen=True)
class Slot:
    """One tool parameter that is captured from speech and confirmed before the tool runs."""

    name: str
    kind: SlotKind
    min_len: int = 1
    max_len: int = 20
    currency: str = ""  # an amount's (ISO 4217: USD, EUR, GBP...), for its read-back in words
    today: date | None = None  # a date slot's "today" (the dialog sets it when it asks; see spoken_values)

    @classmethod
    def of(cls, name: str, prop: Mapping[str, Any]) -> Slot | None:
        """The slot a parameter declares ("x-slot"), with its length from the pattern
        ("^[0-9]{4}$", "\\d{7,15}") or minLength/maxLength; None if it is no slot. A kind
        we do not know is a configuration error, raised where the agent file is loaded."""
        kind = prop.get("x-slot")
        if kind is None:
            return None
        if kind not in KINDS:
            raise ValueError(f"x-slot must be one of {', '.join(KINDS)}, got {kind!r}")
        currency = str(prop.get("x-currency", "")).upper()
        if currency and (kind != "amount" or currency not in CURRENCY_WORDS):
            raise ValueError(f"slot {name!r}: x-currency is for an amount slot, one of {', '.join(CURRENCY_WORDS)}; "
                             f"got {prop.get('x-currency')!r}")
        if kind in ("date", "amount"):
            return cls(name, kind, currency=currency)
        lo, hi = (7, 15) if kind == "phone" else (1, 20)
        m = _LENGTH_RE.search(str(prop.get("pattern", "")))
        if m:
            a, b = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            lo, hi = int(a), int(b) if b else int(a)
        lo, hi = int(prop.get("minLength", lo)), int(prop.get("maxLength", hi))
        if lo < 1 or hi < lo:
            raise ValueError(f"slot {name!r}: digits between {lo} and {hi} is not a length")
        return cls(name, kind, lo, hi)

    @property
    def digits(self) -> bool:
        """A string of digits (keypad entry, group repair and pieces apply)."""
        return self.kind in ("digits", "phone")

    @property
    def stt_prompts(self) -> tuple[str, ...]:
        """What the recogniser is told to expect, one transcription per prompt (see STT_PROMPTS)."""
        return STT_PROMPTS[self.kind]

    @property
    def what(self) -> str:
        """The slot in words, for the prompts ("phone number")."""
        return {"phone": "phone number", "email": "email address"}.get(self.kind, self.name.replace("_", " "))

    def valid(self, value: str) -> bool:
        if self.digits:
            return value.isdigit() and self.min_len <= len(value) <= self.max_len
        if self.kind == "date":
            return _ISO_DATE_RE.fullmatch(value) is not None
        if self.kind == "amount":
            return _AMOUNT_RE.fullmatch(value) is not None
        return _EMAIL_RE.fullmatch(value) is not None

    def capture(self, text: str) -> str:
        """The value as heard in `text` ("" if none): every digit of a digits slot, in order,
        after spoken numbers become digits ("nine double zero" -> "900", "oh" -> 0); the email
        of an email slot, lower case; a date as ISO 8601, an amount as "42.50" (spoken_values).
        Not checked against the length: see `valid`."""
        typed = keypad_digits(text)
        if typed is not None:
            return typed if self.digits else ""
        if self.digits:
            return "".join(re.findall(r"\d", normalize_transcript(_unit_digits(soundalikes(text)))))
        if self.kind == "date":
            if self.today is None:
                raise ValueError(f"date slot {self.name!r}: no today to resolve a date against")
            # The normaliser joins whisper's "July 4 1985" into "July 41985": then the text as written.
            return spoken_date(normalize_transcript(text), self.today) or spoken_date(text, self.today)
        if self.kind == "amount":
            return spoken_amount(normalize_transcript(text))
        found = _EMAIL_RE.findall(normalize_emails(letter_names(text)).lower())
        return found[0].rstrip(".") if found else ""

    def corrected(self, value: str, text: str) -> str:
        """`value` with the one part `text` corrects ("no, the sixth" for a date), or "" (only a
        date has parts a caller names; a number's groups are `repair`'s)."""
        return corrected_date(value, normalize_transcript(text)) if self.kind == "date" else ""

    def read_back(self, value: str) -> str:
        """The value as the agent says it to be checked: digits one by one in the groups people
        use ("5 5 5, 2 3 4, 9 8 7 6"), an email spelled ("j o h n dot s m i t h at example dot com"
        with the domain's labels spelled too, but a common ending said as a word), a date with
        its weekday ("Friday, March 5th, 2027"), an amount in its currency's words."""
        if self.digits:
            return ", ".join(" ".join(g) for g in digit_groups(value))
        if self.kind == "date":
            return say_date(value)
        if self.kind == "amount":
            return say_amount(value, self.currency)
        local, _, domain = value.partition("@")
        labels = domain.split(".")
        spoken = [spell(local)] + [label if i == len(labels) - 1 and label in _TLDS else spell(label) for i, label in enumerate(labels)]
        return f"{spoken[0]} at {' dot '.join(spoken[1:])}"


def soundalikes(text: str) -> str:
    """Words in a run of digits that are digits heard through the phone: "oh one six three" ->
    "zero one six three", "4 1 time, 5 5" -> "4 1 five, 5 5". A run grows from a real digit; "to"
    and "for" only after one ("back to 555" keeps its "to")."""
    words = re.split(r"([\s,.!?-]+)", text)
    digit = [w.lower() in _DIGIT_WORDS and w.lower() not in ("oh", "o") or w.isdigit() for w in words]

    def grow(order: range, step: int, words_ok: frozenset[str] | None) -> None:
        for i in order:
            low = words[i].lower()
            j = i - step
            if low in _SOUNDALIKES and not digit[i] and 0 <= j < len(words) and digit[j] and (words_ok is None or low not in words_ok):
                words[i] = _SOUNDALIKES[low]
                digit[i] = True

    grow(range(0, len(words)), 2, None)  # after a digit: any soundalike
    grow(range(len(words) - 1, -1, -1), -2, frozenset({"to", "too", "for", "fore"}))  # before one: not "to"/"for"
    return "".join(words)


# Letters as whisper writes them when it hears a letter's name as a word: "J-O-H and dot ..."
# for "j o h n dot ...", "b d d are at ..." (bench/value_slots.py, the email answers).
_LETTER_NAMES = {"and": "n", "an": "n", "en": "n", "are": "r", "ar": "r", "you": "u", "why": "y", "see": "c", "sea": "c",
                 "be": "b", "bee": "b", "dee": "d", "gee": "g", "tea": "t", "tee": "t", "pee": "p", "pea": "p", "vee": "v",
                 "jay": "j", "kay": "k", "el": "l", "em": "m", "oh": "o", "eye": "i", "ess": "s", "ex": "x", "eff": "f",
                 "ef": "f", "zed": "z", "zee": "z", "queue": "q", "cue": "q", "aitch": "h"}


def letter_names(text: str) -> str:
    """Letter names among spelled letters as the letters ("J-O-H and dot" -> "J-O-H n dot"): a
    name counts only next to a single letter (or a name that does), so "and" elsewhere stays."""
    words = re.split(r"([\s,.!?-]+)", text)
    letter = [len(w) == 1 and w.isalpha() for w in words]
    changed = True
    while changed:
        changed = False
        for i, w in enumerate(words):
            low = w.lower()
            if not letter[i] and low in _LETTER_NAMES and any(0 <= j < len(words) and letter[j] for j in (i - 2, i + 2)):
                words[i], letter[i], changed = _LETTER_NAMES[low], True, True
    return "".join(words)


_UNITS = {w: str(i) for w, i in UNITS.items()}
_TENS_OR_MORE = frozenset("twenty thirty forty fifty sixty seventy eighty ninety hundred thousand and".split())


def _unit_digits(text: str) -> str:
    """Single digit words as digits ("five. five, five" -> "5. 5, 5"), and "double"/"triple"
    before one; a unit after "twenty"... stays a word, so "twenty one" is still 21."""
    words = re.split(r"([\s,.!?-]+)", text)
    for i, w in enumerate(words):
        low = w.lower()
        prev = words[i - 2].lower() if i >= 2 else ""
        if low in _UNITS and prev not in _TENS_OR_MORE:
            words[i] = _UNITS[low]
            if prev in ("double", "triple"):
                words[i - 2], words[i - 1] = "", ""
                words[i] *= 2 if prev == "double" else 3
    return "".join(words)


def spell(text: str) -> str:
    """Letters and digits one by one, punctuation named: "j.smith" -> "j o h n dot s m i t h"."""
    names = {".": "dot", "-": "dash", "_": "underscore", "+": "plus"}
    return " ".join(names.get(ch, ch) for ch in text if ch.isalnum() or ch in names)


def digit_groups(digits: str) -> list[str]:
    """Groups of three with a last group of four or two: 10 digits 3-3-4, 8 digits 3-3-2; four
    or fewer stay one group."""
    if len(digits) <= 4:
        return [digits] if digits else []
    out, rest = [], digits
    while len(rest) > 4:
        out.append(rest[:3])
        rest = rest[3:]
    out.append(rest)
    return out


def keypad_digits(text: str) -> str | None:
    """The digits of a keypad entry turn ("(keypad) 4572", see reply.keypad_transcript), else None."""
    m = _KEYPAD_RE.match(text.strip())
    return "".join(ch for ch in m.group(1) if ch.isdigit()) if m else None


def yes_or_no(text: str) -> bool | None:
    """The caller's answer to a read-back: True (yes), False (no, or a correction that starts
    "actually"), None (neither: the caller said something else)."""
    words = " ".join(re.findall(r"[a-z']+|\d+", text.lower()))
    for lead in ("um ", "uh ", "er ", "well ", "oh ", "okay ", "ok "):
        if words.startswith(lead):
            words = words[len(lead):]
    if _NO_RE.match(words):
        return False
    if _YES_RE.match(words) or words in ("ok", "okay", "okay yes", "yes please"):
        return True
    return None


def repair(value: str, correction: str, slot: Slot) -> str | None:
    """`value` with the caller's correction merged in, or None when it cannot be placed: a whole
    valid number replaces it; a shorter run of digits replaces the one read-back group of its
    length that it differs from least (ties, or an identical group: None, ask again)."""
    if not correction:
        return None
    if slot.valid(correction) and len(correction) >= len(value) - 1:
        return correction
    groups = digit_groups(value)
    fits = [(sum(a != b for a, b in zip(g, correction)), i) for i, g in enumerate(groups) if len(g) == len(correction)]
    if not fits:
        return None
    fits.sort()
    best, i = fits[0]
    if best == 0 or (len(fits) > 1 and fits[1][0] == best):
        return None
    groups[i] = correction
    return "".join(groups)


def slots_of(parameters: Mapping[str, Any]) -> dict[str, Slot]:
    """The slots among a tool's parameters, in declaration order."""
    out = {}
    for name, prop in (parameters.get("properties") or {}).items():
        slot = Slot.of(name, prop) if isinstance(prop, Mapping) else None
        if slot is not None:
            out[name] = slot
    return out
