"""Telephony normalisation of transcripts for the dialog layer, and a WER that uses it.

Callers say numbers, times and emails as words ("five five five, one two three four", "half past
two", "john dot smith at example dot com"); the dialog layer wants "5551234", "2:30" and
"john.smith@example.com". Everything here is pure string work (no I/O), and conservative: a
rewrite happens only where the words clearly are a number, a time or an email, so "one of them"
and "meet me at the store" pass through unchanged. Order matters: clock phrases ("quarter to
three") and ordinals ("twenty first") are rewritten before plain numbers would split them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
TEENS = {w: i + 10 for i, w in enumerate("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
TENS = {w: (i + 2) * 10 for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
MULTS = {"thousand": 1000, "million": 1_000_000}
ORD_UNITS = {w: i + 1 for i, w in enumerate("first second third fourth fifth sixth seventh eighth ninth".split())}
ORD_SMALL = {**ORD_UNITS, "tenth": 10, "eleventh": 11, "twelfth": 12}
ORD_BIG = {w: i + 13 for i, w in enumerate("thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split())}
ORD_BIG.update({w: (i + 2) * 10 for i, w in enumerate("twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth".split())})
MONTHS = "january february march april may june july august september october november december".split()
HOURS = {**{w: v for w, v in UNITS.items() if v}, "ten": 10, "eleven": 11, "twelve": 12}
TLDS = frozenset("com org net edu gov mil int io co uk us ca au de fr nl ie info biz me tv ai app dev".split())
# A lone word before "at" that is far likelier English than an email's local part.
_NOT_LOCAL = frozenset("me us you him her them it is are was be here there this that home work look arrive arrived be back".split())
_EMAIL_CUES = frozenset("email e-mail mail address".split())
_LOCAL_AFTER = frozenset("is it's its was to try use".split())
_NOT_TIME_AFTER = frozenset("dollars dollar bucks cents pounds euros percent minutes hours days weeks years times people items".split())

_TOKEN_RE = re.compile(r"(\s*)([\w.+-]+@[\w-]+(?:\.[\w-]+)+|\d{1,3}(?:,\d{3})+(?!\d)|\d+(?::\d\d)?[A-Za-z]*|[A-Za-z]+(?:['’][A-Za-z]+)*|\S)")
_DIGITS_RE = re.compile(r"\d+|\d{1,3}(?:,\d{3})+")


@dataclass
class _Tok:
    text: str
    sp: str  # whitespace before the token

    @property
    def low(self) -> str:
        return self.text.lower()


def _tokens(text: str) -> tuple[list[_Tok], str]:
    toks = [_Tok(m.group(2), m.group(1)) for m in _TOKEN_RE.finditer(text)]
    tail = text[len(text.rstrip()) :] if toks else text
    return toks, tail


def _join(toks: list[_Tok], tail: str = "") -> str:
    return "".join(t.sp + t.text for t in toks) + tail


def _low(toks: list[_Tok], i: int) -> str:
    return toks[i].low if 0 <= i < len(toks) else ""


# --- clock phrases and ordinals (word-level regexes, before numbers) --------------------------

_HOUR_ALT = "|".join(sorted(HOURS, key=len, reverse=True)) + r"|1[0-2]|[1-9]"
_MIN_ALT = r"twenty[\s-]+five|twenty|ten|five|[1-5]?\d"
_QUARTER_RE = re.compile(rf"\b(?:a\s+)?(quarter|half)\s+(past|after|to|till|before)\s+({_HOUR_ALT})\b(?![:.]\d)", re.I)
_PAST_RE = re.compile(rf"\b({_MIN_ALT})\s+(?:minutes\s+)?(past|after)\s+({_HOUR_ALT})\b(?![:.]\d)", re.I)
_NOON_RE = re.compile(r"\b(?:(?:twelve|12)\s+)?(noon|midnight)\b", re.I)


def _hour(word: str) -> int:
    return int(word) if word.isdigit() else HOURS[word.lower()]


def _clock_phrases(text: str) -> str:
    """"half past two" -> "2:30", "quarter to three" -> "2:45", "noon" -> "12:00 PM"."""

    def quarter(m: re.Match[str]) -> str:
        mins, rel, h = (15 if m.group(1).lower() == "quarter" else 30), m.group(2).lower(), _hour(m.group(3))
        if rel in ("to", "till", "before"):
            if mins == 30:  # "half to" is not a time phrase in English
                return m.group(0)
            h, mins = (h - 2) % 12 + 1, 60 - mins
        return f"{h}:{mins:02d}"

    def past(m: re.Match[str]) -> str:
        w = re.sub(r"[\s-]+", " ", m.group(1).lower())
        mins = int(w) if w.isdigit() else {"twenty five": 25, "twenty": 20, "ten": 10, "five": 5}[w]
        return f"{_hour(m.group(3))}:{mins:02d}" if 0 < mins < 60 else m.group(0)

    text = _QUARTER_RE.sub(quarter, text)
    text = _PAST_RE.sub(past, text)
    return _NOON_RE.sub(lambda m: "12:00 PM" if m.group(1).lower() == "noon" else "12:00 AM", text)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


_TENS_ALT = "|".join(TENS)
_COMPOUND_ORD_RE = re.compile(rf"\b({_TENS_ALT})[\s-]+({'|'.join(ORD_UNITS)})\b", re.I)
_BIG_ORD_RE = re.compile(rf"\b({'|'.join(ORD_BIG)})\b", re.I)
_MONTH_ALT = "|".join(m if m != "may" else "(?-i:May)" for m in MONTHS)  # "you may first..."
_SMALL_ORD_ALT = "|".join(ORD_SMALL)
_ORD_BEFORE_MONTH_RE = re.compile(rf"\b({_SMALL_ORD_ALT})(?=\s+(?:of\s+)?(?:{_MONTH_ALT})\b)", re.I)
_ORD_AFTER_MONTH_RE = re.compile(rf"\b({_MONTH_ALT})\s+(?:the\s+)?({_SMALL_ORD_ALT})\b", re.I)


def normalize_ordinals(text: str) -> str:
    """"the twenty first" -> "the 21st". first..twelfth change only next to a month, because
    "the first time" and "a tenth of" are not dates."""
    text = _COMPOUND_ORD_RE.sub(lambda m: _ordinal(TENS[m.group(1).lower()] + ORD_UNITS[m.group(2).lower()]), text)
    text = _BIG_ORD_RE.sub(lambda m: _ordinal(ORD_BIG[m.group(1).lower()]), text)
    text = _ORD_BEFORE_MONTH_RE.sub(lambda m: _ordinal(ORD_SMALL[m.group(1).lower()]), text)
    return _ORD_AFTER_MONTH_RE.sub(lambda m: m.group(0)[: m.start(2) - m.start(0)] + _ordinal(ORD_SMALL[m.group(2).lower()]), text)


# --- numbers ----------------------------------------------------------------------------------


@dataclass
class _Group:
    start: int  # token range [start, end)
    end: int
    digits: str
    kind: str  # "unit" one word 0-9 | "oh" | "n" cardinal >= 10 | "x" digits as written | "d" double/triple
    value: int


def _is_num_start(toks: list[_Tok], i: int) -> bool:
    if i >= len(toks):
        return False
    w, nxt = toks[i].low, _low(toks, i + 1)
    if _DIGITS_RE.fullmatch(toks[i].text) or w in UNITS or w in TEENS or w in TENS:
        return True
    if w == "a":
        return nxt in ("hundred", *MULTS)
    return w in ("double", "triple") and (nxt in UNITS or nxt in ("oh", "o") or (len(nxt) == 1 and nxt.isdigit()))


def _cardinal(toks: list[_Tok], j: int) -> _Group | None:
    """Greedy cardinal: "three hundred and twelve", "twenty-five", "two thousand and five"."""
    total, part, last, prev_mult, k, end = 0, 0, "", 0, j, j
    while k < len(toks):
        w = toks[k].low
        if w == "-" and last == "tens" and not toks[k].sp and k + 1 < len(toks) and not toks[k + 1].sp and _low(toks, k + 1) in UNITS:
            k += 1
            continue
        if w in UNITS and (w != "zero" or not last) and last in ("", "tens", "hundred", "mult", "and"):
            part, last = part + UNITS[w], ("zero" if w == "zero" else "unit")
        elif (w in TEENS or w in TENS) and last in ("", "hundred", "mult", "and"):
            part, last = part + TEENS.get(w, TENS.get(w, 0)), ("teen" if w in TEENS else "tens")
        elif w == "a" and not last and _low(toks, k + 1) in ("hundred", *MULTS):
            part, last = 1, "unit"
        elif w == "hundred" and last in ("unit", "teen", "tens") and part < 100:
            part, last = part * 100, "hundred"
        elif w in MULTS and last in ("unit", "teen", "tens", "hundred") and (not prev_mult or MULTS[w] < prev_mult):
            total, part, last, prev_mult = total + part * MULTS[w], 0, "mult", MULTS[w]
        elif w == "and" and last in ("hundred", "mult") and any(_low(toks, k + 1) in d for d in (UNITS, TEENS, TENS)):
            last = "and"
            k += 1
            continue
        else:
            break
        k += 1
        end = k
        if last == "zero":
            break
    if end == j:
        return None
    value = total + part
    kind = "unit" if end - j == 1 and toks[j].low in UNITS else "n"
    return _Group(j, end, str(value), kind, value)


def _group(toks: list[_Tok], j: int, prev: _Group | None) -> _Group | None:
    """One number item at j: digits, "oh" inside a run, double/triple, or a cardinal."""
    t, w = toks[j], toks[j].low
    if _DIGITS_RE.fullmatch(t.text):
        d = t.text.replace(",", "")
        return _Group(j, j + 1, d, "x", int(d))
    if w in ("oh", "o") and prev is not None and (_is_num_start(toks, j + 1) or _low(toks, j + 1) in ("oh", "o")):
        return _Group(j, j + 1, "0", "oh", 0)
    if w in ("double", "triple") and j + 1 < len(toks):
        inner = _Tok("zero", "") if _low(toks, j + 1) in ("oh", "o") else toks[j + 1]
        d = str(UNITS[inner.low]) if inner.low in UNITS else inner.text
        if len(d) == 1 and d.isdigit():
            return _Group(j, j + 2, d * (2 if w == "double" else 3), "d", 0)
    return _cardinal(toks, j) if _is_num_start(toks, j) else None


_MARKER_RE = re.compile(r"\s*(?:[ap]\.?\s?m\b|o'?\s?clock\b)", re.I)


def _as_time(groups: list[_Group], marker: bool) -> str | None:
    """Word groups that read as a clock time: "ten thirty", "two oh five p m", "three pm"."""
    if any(g.kind in ("x", "d") for g in groups) or not 1 <= groups[0].value <= 12 or groups[0].kind not in ("unit", "n"):
        return None
    h = groups[0].value
    if len(groups) == 1:
        return f"{h}" if marker else None
    if len(groups) == 2 and groups[1].kind == "n" and 10 <= groups[1].value <= 59:
        return f"{h}:{groups[1].value:02d}"
    if len(groups) == 3 and marker and groups[1].kind == "oh" and groups[2].kind == "unit" and groups[2].value > 0:
        return f"{h}:0{groups[2].value}"
    return None


def _numbers(text: str, *, only_times: bool = False, lone_digits: bool = False) -> str:
    toks, tail = _tokens(text)
    out: list[_Tok] = []
    i = 0
    while i < len(toks):
        if not _is_num_start(toks, i):
            out.append(toks[i])
            i += 1
            continue
        # Collect a span: segments of groups, separated by "," or "-" between number items.
        segments: list[list[_Group]] = [[]]
        seps: list[_Tok] = []
        j = i
        while j < len(toks):
            g = _group(toks, j, segments[-1][-1] if segments[-1] else None)
            if g is None or (segments[-1] and not toks[j].sp):
                break
            segments[-1].append(g)
            j = g.end
            if j + 1 < len(toks) and toks[j].text in (",", "-") and _is_num_start(toks, j + 1) and toks[j + 1].sp:
                seps.append(toks[j])
                segments.append([])
                j += 1
        segments = [seg for seg in segments if seg]
        if not segments:
            out.append(toks[i])
            i += 1
            continue
        end = segments[-1][-1].end
        marker = bool(_MARKER_RE.match(_join(toks[end : end + 5])))
        time = _as_time(segments[0], marker) if len(segments) == 1 and _low(toks, end) not in _NOT_TIME_AFTER else None
        if time is not None:
            out.append(_Tok(time, toks[i].sp))
        elif only_times:
            out.extend(toks[i:end])
        else:
            out.extend(_render(toks, segments, seps, lone_digits))
        i = end
    return _join(out, tail)


def _render(toks: list[_Tok], segments: list[list[_Group]], seps: list[_Tok], lone_digits: bool) -> list[_Tok]:
    """Digit readouts ("five five five, one two three four") join across commas; a lone small
    number word ("one of them") stays a word unless `lone_digits` (the WER normaliser)."""
    rendered: list[_Tok] = []
    # "1, 2, 3, 4": three or more single digits in a row are a readout too.
    singles = len(segments) >= 3 and all(len(seg) == 1 and len(seg[0].digits) == 1 for seg in segments)
    joins = [s > 0 and (singles or len(seg) > 1 or len(segments[s - 1]) > 1) for s, seg in enumerate(segments)]
    for s, seg in enumerate(segments):
        sp = toks[seg[0].start].sp
        joined = joins[s]
        # A group joined to a readout is part of it: digits, never "five0123".
        if len(seg) > 1 or singles or joined or (s + 1 < len(segments) and joins[s + 1]):
            text = "".join(g.digits for g in seg)
        elif seg[0].kind == "x" or (seg[0].kind == "unit" and not lone_digits):
            text = _join(toks[seg[0].start : seg[0].end]).lstrip()
        else:
            text = seg[0].digits
        if joined:
            rendered[-1] = _Tok(rendered[-1].text + text, rendered[-1].sp)
        else:
            rendered.extend([seps[s - 1], _Tok(text, sp)] if s else [_Tok(text, sp)])
    return rendered


_AMPM_RE = re.compile(r"(?<![\d:.])(\d{1,2})(?:[:.](\d\d))?\s*([ap])\.?\s?m\b(?:\.(?=\s*\S))?", re.I)
_AT_DOT_TIME_RE = re.compile(r"\b(at|by|from|until|till|before|after|around)\s+(1[0-2]|[1-9])\.([0-5]\d)\b(?!\.\d)", re.I)
_OCLOCK_RE = re.compile(r"(?<![\d:])(\d{1,2})\s+o'?\s?clock\b", re.I)


def _format_ampm(text: str) -> str:
    def ampm(m: re.Match[str]) -> str:
        h, mins = int(m.group(1)), int(m.group(2) or 0)
        return f"{h}:{mins:02d} {m.group(3).upper()}M" if 1 <= h <= 12 and mins < 60 else m.group(0)

    text = _AT_DOT_TIME_RE.sub(r"\1 \2:\3", text)  # Whisper writes "at 10.30"
    text = _OCLOCK_RE.sub(lambda m: f"{m.group(1)}:00" if 1 <= int(m.group(1)) <= 12 else m.group(0), text)
    return _AMPM_RE.sub(ampm, text)


def normalize_numbers(text: str) -> str:
    """Spoken numbers to digits: "twenty five" -> "25", "five oh two" -> "502", "double seven"
    -> "77", digit runs joined ("5 5 5, 1 2 3 4" -> "5551234"). Word pairs that read as a clock
    time become one ("ten thirty" -> "10:30"), since "1030" would lose what was meant."""
    return _format_ampm(_numbers(text))


def normalize_times(text: str) -> str:
    """Clock times only: "half past two" -> "2:30", "three p m" -> "3:00 PM", "noon"."""
    return _format_ampm(_numbers(_clock_phrases(text), only_times=True))


# --- emails -----------------------------------------------------------------------------------

_SEP_WORDS = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-", ".": ".", "_": "_", "-": "-"}


def _is_part(t: _Tok) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9]+", t.text)) and t.low not in _SEP_WORDS and t.low != "at"


def _is_sep(toks: list[_Tok], i: int) -> bool:
    """A spoken separator word, or a written ".", "_", "-" glued to its neighbours."""
    t = toks[i]
    if t.low in ("dot", "underscore", "dash", "hyphen"):
        return True
    return t.text in (".", "_", "-") and not t.sp and i + 1 < len(toks) and not toks[i + 1].sp


def _is_spelled(toks: list[_Tok], k: int) -> bool:
    """A letter or digit said on its own, as in a spelling ("j o h n", "7 0")."""
    return 0 <= k < len(toks) and len(toks[k].text) == 1 and toks[k].text.isalnum()


def _is_spelling_dash(toks: list[_Tok], k: int) -> bool:
    """The "-" in "J-O-H-N" or "7-0": how Whisper writes spelled letters, not a spoken "dash"."""
    return toks[k].text == "-" and _is_sep(toks, k) and _is_spelled(toks, k - 1) and _is_spelled(toks, k + 1)


def _chunk_back(toks: list[_Tok], k: int) -> int:
    """Start of the local-part chunk ending at k: a run of spelled letters and digits ("j o h n",
    "J-O-H-N", "7-0"), or one word (with digits glued on: "john 23", "john 2 3")."""
    end = k
    if _is_spelled(toks, k):
        while _is_spelled(toks, k - 1) or (k >= 2 and _is_spelling_dash(toks, k - 1)):
            k -= 2 if toks[k - 1].text == "-" else 1
    if all(t.text.isdigit() or t.text == "-" for t in toks[k : end + 1]) and k - 1 >= 0 and _is_part(toks[k - 1]) \
            and not toks[k - 1].text.isdigit() and not _is_spelled(toks, k - 1) and toks[k - 1].low not in _NOT_LOCAL:
        return k - 1
    return k


def _plain_local_ok(toks: list[_Tok], s: int) -> bool:
    """A lone plain word before "at" ("she works at example dot com") is an email's local
    part only after an email cue, at the start of a clause, or after "is"/"to"-like words."""
    if any(t.low in _EMAIL_CUES for t in toks[max(0, s - 4) : s]):
        return True
    if toks[s].low in _NOT_LOCAL:
        return False
    return s == 0 or toks[s - 1].text in (",", ".", ":", ";", "-") or toks[s - 1].low in _LOCAL_AFTER


def _label(toks: list[_Tok], k: int) -> tuple[str, int] | None:
    """A domain label at k: one word, or a run of spelled letters ("g m x")."""
    if k >= len(toks) or not _is_part(toks[k]):
        return None
    j = k + 1
    while _is_spelled(toks, k) and _is_spelled(toks, j):
        j += 1
    return "".join(t.low for t in toks[k:j]), j


def _email_at(toks: list[_Tok], a: int) -> tuple[int, int, str] | None:
    """(start, end, address) for an email around the "at" token at index a, else None."""
    labels: list[str] = []
    k = a + 1
    while (lab := _label(toks, k)) is not None:
        text, k = lab
        while k < len(toks) and toks[k].low in ("dash", "hyphen", "-") and (more := _label(toks, k + 1)) is not None:
            text, k = text + "-" + more[0], more[1]
        labels.append(text)
        if not (k < len(toks) and (toks[k].low == "dot" or (toks[k].text == "." and _is_sep(toks, k))) and _label(toks, k + 1)):
            break
        k += 1
    if len(labels) < 2 or labels[-1] not in TLDS:
        return None
    # Local part, backwards from the token before "at".
    s = a - 1
    if s < 0 or not _is_part(toks[s]):
        return None
    start = _chunk_back(toks, s)
    chunks = 1
    while start - 2 >= 0 and _is_sep(toks, start - 1) and _is_part(toks[start - 2]):
        start = _chunk_back(toks, start - 2)
        chunks += 1
    if chunks == 1 and start == s and not _plain_local_ok(toks, s):
        return None
    local = "".join(_SEP_WORDS.get(t.low, t.low) for k, t in enumerate(toks[start:a], start) if not _is_spelling_dash(toks, k))
    return start, k, f"{local}@{'.'.join(labels)}"


def normalize_emails(text: str) -> str:
    """Spelled emails: "john dot smith at example dot com" -> "john.smith@example.com",
    "j o h n at gmail dot com" -> "john@gmail.com". Needs local part + at + domain + dot + a
    known TLD, so "at the store" is never touched."""
    toks, tail = _tokens(text)
    out: list[_Tok] = []
    i = 0
    while i < len(toks):
        if toks[i].low in ("at", "@"):
            found = _email_at(toks, i)
            if found is not None:
                start, end, addr = found
                del out[len(out) - (i - start) :]  # the local part, already copied
                out.append(_Tok(addr, toks[start].sp))
                i = end
                continue
        out.append(toks[i])
        i += 1
    return _join(out, tail)


def normalize_transcript(text: str) -> str:
    """Everything above, in the order that keeps each rewrite from splitting another."""
    text = normalize_ordinals(_clock_phrases(text))
    return normalize_emails(normalize_numbers(text))


# --- WER ----------------------------------------------------------------------------------------


def wer_words(text: str) -> list[str]:
    """The words WER compares: telephony-normalised (digits, times, emails), lone digit words
    as digits too, "$5" as "5 dollars", lowercased, punctuation inside a word dropped
    ("10:30" -> "1030", "don't" -> "dont"), digit runs joined ("555-1234" -> "5551234")."""
    text = normalize_emails(_format_ampm(_numbers(normalize_ordinals(_clock_phrases(text)), lone_digits=True)))
    text = re.sub(r"\$(\d[\d,]*)", r"\1 dollars", text).replace("%", " percent").lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"(?<=\w)[^\w\s](?=\w)", "", text)
    text = re.sub(r"[^\w\s]", " ", text)
    text = re.sub(r"(?<=\d)\s+(?=\d)", "", text)
    return text.split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words, over
    `wer_words` of both sides, so "five five five" vs "555" is no error. It can exceed 1 when
    the hypothesis inserts many words; an empty reference gives 0.0 (empty hypothesis) or 1.0."""
    ref, hyp = wer_words(reference), wer_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[-1] / len(ref)
