"""Dates and money amounts from what a caller said, and back into words a caller can check.

Pure functions over the recogniser's text after models.normalize (number words are digits by
then: "the fifth of March twenty twenty seven" arrives as "the 5th of March 2027", "forty two
dollars and fifty cents" as "42 dollars and 50 cents", "twelve fifty" as "12:50"). slots.py
uses them for the `date` and `amount` slot kinds.

A date is returned as ISO 8601 (2027-03-05). Without a year it is the next such day on or after
`today` (callers name the year of a birth date; an appointment or a delivery is ahead). "today",
"tomorrow", "the day after tomorrow" and weekdays ("next Tuesday", "on Friday": the first one
after today) are relative to `today`, which the caller passes in (the dialog's own clock).
Numeric dates such as 5/3/2027 are refused: month-first or day-first cannot be told by ear.

An amount is returned as a decimal string with two places (42.50).
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
YEARS = (1900, 2199)  # what a caller's date can be
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s*(?:in\s+)?(\d{4}))?"
# "of" comes through the phone band as "and" or "on" ("the 5th and March"): any of them joins.
_DAY_MONTH = re.compile(rf"\b{_DAY}\s+(?:(?:of|and|on|in)\s+)?({_MONTH})\b\.?{_YEAR}")
_MONTH_DAY = re.compile(rf"\b({_MONTH})\.?\s+(?:the\s+)?{_DAY}\b{_YEAR}")
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_WEEKDAY = re.compile(rf"\b(?:(next|this|on|coming)\s+)?({'|'.join(WEEKDAYS)})\b")

_ORDINALS = dict(zip("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
                     "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split(), range(1, 21)))
_ORDINAL_WORDS = re.compile(r"\b(?:(twenty|thirty)[\s-]+)?(" + "|".join(_ORDINALS) + r")\b|\bthirtieth\b")
_UNIT_WORDS = dict(zip("one two three four five six seven eight nine".split(), range(1, 10)))

# Currency words as callers say them; the amount's value does not depend on which was said.
_MAJOR = r"(?:dollars?|bucks|euros?|pounds?|quid|francs?)"
_MINOR = r"(?:cents?|pence|penny|p)"
_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)"
_AMOUNT = [
    # "twelve dollars and five cents" as the recogniser often writes it: "$12 and $5", "$12.00 and $5.00"
    re.compile(r"[$€£]\s?(\d+)(?:\.00)?\s+and\s+[$€£]\s?(\d{1,2})(?:\.00)?(?!\.?\d)"),
    re.compile(rf"[$€£]\s?{_NUMBER}(?:\.(\d{{1,2}}))?"),  # $42.50, £300
    re.compile(rf"\b{_NUMBER}\.(\d{{2}})\b"),  # 42.50 (dollars)
    re.compile(rf"\b{_NUMBER}\s+{_MAJOR}(?:,?\s+(?:and\s+)?(\d{{1,2}})(?:\s+{_MINOR})?\b)?"),  # 42 dollars (and) 50 (cents)
    re.compile(rf"\b(\d{{1,3}}):(\d{{2}})\b"),  # "twelve fifty" (12:50): in an amount slot, 12.50
]
# "one dollar and one cent": the normaliser leaves a lone unit word as a word
_UNIT_BEFORE_CURRENCY = re.compile(rf"\b({'|'.join(_UNIT_WORDS)})\s+(?=(?:{_MAJOR}|{_MINOR})\b)")
_CENTS_ONLY = re.compile(rf"\b(\d{{1,2}})\s+{_MINOR}\b")
_BARE = re.compile(rf"\b{_NUMBER}\b")

CURRENCY_WORDS = {"USD": ("dollars", "cents"), "EUR": ("euros", "cents"), "GBP": ("pounds", "pence"),
                  "CAD": ("dollars", "cents"), "AUD": ("dollars", "cents"), "CHF": ("francs", "centimes")}


def spoken_date(text: str, today: date) -> str:
    """The date in `text` as ISO 8601, or "" when it names none (or an impossible one)."""
    low = _with_ordinal_numbers(text)
    if m := _ISO.search(low):
        return _iso(int(m[1]), int(m[2]), int(m[3]))
    for pattern, day_group, month_group in ((_DAY_MONTH, 1, 2), (_MONTH_DAY, 2, 1)):
        if m := pattern.search(low):
            day, month, year = int(m[day_group]), MONTHS[m[month_group]], m[3]
            if year:
                return _iso(int(year), month, day)
            this_year = _iso(today.year, month, day)
            if this_year and this_year >= today.isoformat():
                return this_year
            return _iso(today.year + 1, month, day)
    if re.search(r"\bday after tomorrow\b", low):
        return (today + timedelta(days=2)).isoformat()
    if re.search(r"\btomorrow\b", low):
        return (today + timedelta(days=1)).isoformat()
    if re.search(r"\btoday\b", low):
        return today.isoformat()
    if m := _WEEKDAY.search(low):
        ahead = (WEEKDAYS[m[2]] - today.weekday()) % 7 or 7
        return (today + timedelta(days=ahead)).isoformat()
    return ""


def corrected_date(previous: str, text: str) -> str:
    """A correction of the parts of a read-back date a caller names ("no, the sixth", "no, April",
    "no, 2027"): `previous` (ISO) with that day, month or year replaced, as ISO; "" when `text`
    names none of them or the result is no date. A whole date in `text` is spoken_date's."""
    low = _with_ordinal_numbers(text)
    was = date.fromisoformat(previous)
    day = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)\b", low)
    month = re.search(rf"\b({_MONTH})\b", low)
    year = re.search(r"\b(\d{4})\b", low)
    if day is None and month is None and year is None:
        return ""
    return _iso(int(year[1]) if year else was.year, MONTHS[month[1]] if month else was.month, int(day[1]) if day else was.day)


def _with_ordinal_numbers(text: str) -> str:
    """Lower case, ordinal words as numbers: "the first of may" (the normaliser leaves it) -> "the 1st of may"."""
    return _ORDINAL_WORDS.sub(_ordinal_number, text.lower())


def _ordinal_number(m: re.Match[str]) -> str:
    if m[0] == "thirtieth":
        return "30th"
    return ordinal({"twenty": 20, "thirty": 30}.get(m[1] or "", 0) + _ORDINALS[m[2]])


def _iso(year: int, month: int, day: int) -> str:
    if not YEARS[0] <= year <= YEARS[1]:  # "July 4th, 3085": a mishearing, not a date
        return ""
    try:
        return date(year, month, day).isoformat()
    except ValueError:  # the 31st of April
        return ""


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def say_date(iso: str) -> str:
    """"Friday, March 5th, 2027": the weekday too, so a caller who meant another day hears it."""
    d = date.fromisoformat(iso)
    return f"{calendar.day_name[d.weekday()]}, {calendar.month_name[d.month]} {ordinal(d.day)}, {d.year}"


def spoken_amount(text: str) -> str:
    """The money amount in `text` as "42.50", or "" when it has none. A bare number is whole
    units ("300" -> 300.00); cents alone are a fraction ("50 cents" -> 0.50)."""
    low = _UNIT_BEFORE_CURRENCY.sub(lambda m: f"{_UNIT_WORDS[m[1]]} ", text.lower())
    for i, pattern in enumerate(_AMOUNT):
        if m := pattern.search(low):
            units, cents = int(m[1].replace(",", "")), m[2] or ""
            if i == 1 and len(cents) == 1:  # "$42.5" is 42.50; "42 dollars and 5 cents" is 42.05
                cents += "0"
            return f"{units}.{int(cents or 0):02d}"
    if m := _CENTS_ONLY.search(low):
        return f"0.{int(m[1]):02d}"
    if m := _BARE.search(low):
        return f"{int(m[1].replace(',', ''))}.00"
    return ""


def say_amount(value: str, currency: str = "") -> str:
    """"42 dollars and 50 cents" for USD (the currency's words), "42 point 50" with none."""
    units, _, cents = value.partition(".")
    words = CURRENCY_WORDS.get(currency.upper())
    if words is None:
        return f"{units} point {' '.join(cents)}" if int(cents) else units
    major, minor = (w if n != 1 or w == "pence" else w.rstrip("s") for w, n in zip(words, (int(units), int(cents))))
    said = [f"{units} {major}"] if int(units) else []
    said += [f"{int(cents)} {minor}"] if int(cents) else []
    return " and ".join(said) or f"0 {major}"
