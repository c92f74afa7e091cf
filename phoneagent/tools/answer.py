"""Spoken answers filled from a tool's result, so facts reach the caller verbatim.

A small model asked to phrase "status delayed, eta 2026-12-09, reason: a storm" may say the
order is on time, or drop the date. A template can't: `{eta:date}` is the system's date read
the way people say it. Fields are the tool's arguments and its JSON result (dotted for nested
objects: {customer.name}); a field the result lacks is an error the dialog turns into an honest
"I can't see that", never a blank.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_KEY_NAMES = {"*": "star", "#": "hash", "+": "plus"}


class AnswerError(ValueError):
    """The template needs a field the result does not have (or cannot format it)."""


@dataclass(frozen=True)
class Answer:
    """One template, or one per value of a result field (`when`), with `otherwise` for the rest."""

    text: str = ""
    when: str = ""
    cases: Mapping[str, str] = field(default_factory=dict)
    otherwise: str = ""

    def template_for(self, values: Mapping[str, Any]) -> str:
        if not self.when:
            return self.text
        key = _lookup(values, self.when)
        chosen = self.cases.get(_case_key(key)) if key is not None else None
        if chosen is None and not self.otherwise:
            raise AnswerError(f"no answer for {self.when}={key!r} and no 'otherwise'")
        return chosen if chosen is not None else self.otherwise

    def render(self, result: Any, arguments: Mapping[str, Any]) -> str:
        values = {**arguments, **result} if isinstance(result, Mapping) else {**arguments, "result": result}
        return fill(self.template_for(values), values)

    def fields(self) -> set[str]:
        """Every field the templates use (checked against nothing at load: results vary)."""
        out: set[str] = set()
        for text in (self.text, self.otherwise, *self.cases.values()):
            out |= {name for _, name, _, _ in string.Formatter().parse(text) if name}
        return out


def _case_key(value: Any) -> str:
    """A result value as a case name, spelled as in the JSON (true, not True)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def fill(template: str, values: Mapping[str, Any]) -> str:
    return " ".join(_Spoken(values).format(template).split())


class _Spoken(string.Formatter):
    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        value = _lookup(self.values, field_name)
        if value is None:
            raise AnswerError(f"the result has no value for {{{field_name}}}")
        return value, field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec.startswith("join:"):  # {slots:join:time:time} -> "9 AM, 2 PM and 4 PM"
            return self._join(value, *format_spec.split(":")[1:3])
        if format_spec == "date":
            return spoken_date(value)
        if format_spec == "digits":
            return spoken_digits(str(value))
        if format_spec == "time":
            return spoken_time(str(value))
        try:
            return str(format(value, format_spec))
        except (ValueError, TypeError) as exc:
            raise AnswerError(f"cannot format {value!r} as {format_spec!r}: {exc}") from None


    def _join(self, items: Any, field: str = "", spec: str = "") -> str:
        if not isinstance(items, list) or not items:
            raise AnswerError("the result has no items to list")
        parts = []
        for item in items:
            value = _lookup(item, field) if field and isinstance(item, Mapping) else item
            if value is None:
                raise AnswerError(f"a listed item has no value for {field!r}")
            parts.append(self.format_field(value, spec))
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _lookup(values: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = values
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def spoken_date(value: Any) -> str:
    """'2026-12-09' -> 'Wednesday, December 9' (a call talks about the weeks around it)."""
    try:
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise AnswerError(f"{value!r} is not an ISO date") from None
    return f"{day:%A}, {day:%B} {day.day}"


def spoken_time(value: str) -> str:
    """'14:30' -> '2:30 PM', '09:00' -> '9 AM'."""
    try:
        t = dt.time.fromisoformat(value)
    except ValueError:
        raise AnswerError(f"{value!r} is not a time of day") from None
    hour = t.hour % 12 or 12
    return f"{hour}{':%02d' % t.minute if t.minute else ''} {'AM' if t.hour < 12 else 'PM'}"


def spoken_digits(text: str) -> str:
    """'4711#' -> '4 7 1 1 hash': an order number or typed keys read one by one, as people do
    on the phone, not as a quantity."""
    return " ".join(_KEY_NAMES.get(ch, ch) for ch in text if ch.isalnum() or ch in _KEY_NAMES)
