"""Handing a caller to a person: when the caller asks for one, and what the person is told.

The summary is extractive on purpose: it quotes what the caller said and typed and what the
agent last said, so it can never invent an account number or a promise. (A larger local model
could paraphrase; the quote is what a human can trust at a glance.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from phoneagent.tools.answer import spoken_digits

_KEYPAD_RE = re.compile(r"\(keypad\)\s*[0-9A-D*#]*")

_HUMAN_RE = re.compile(
    r"\b(?:(?:speak|talk|get|put me through|transfer me|connect me)\b.{0,20}\b"
    r"(?:humans?|persons?|people|someone|somebody|agents?|representatives?|operators?|staff|colleagues?|managers?)"
    r"|real person|human being|live agent)\b", re.IGNORECASE)
_NEGATED_RE = re.compile(r"\b(?:don'?t|do not|doesn'?t|no need|not|never|won'?t)\b(?:\W+\w+){0,3}\W*$", re.IGNORECASE)


def wants_human(text: str) -> bool:
    """The caller asks for a person ("can I speak to a human", "operator please" is not enough
    on its own: too many false hits on "operator of the account")."""
    m = _HUMAN_RE.search(text)
    return m is not None and not _NEGATED_RE.search(text[: m.start()])  # "I don't want to talk to a human"


def _clip(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def handover_summary(transcript: Sequence[tuple[str, str]], *, caller_number: str = "", keypad: Sequence[str] = (),
                     reason: str = "", max_caller_turns: int = 3, words_per_turn: int = 30) -> str:
    """A short spoken summary for the person taking the call.

    `transcript` is (role, text) in order, roles "caller"/"agent" (others are skipped).
    """
    parts = []
    if caller_number and any(ch.isdigit() for ch in caller_number):
        parts.append(f"The caller's number is {spoken_digits(caller_number)}.")
    if reason:
        parts.append(f"They are being transferred because {reason}.")
    said = [_KEYPAD_RE.sub("", t).strip() for r, t in transcript if r == "caller"]  # typed keys are listed apart
    said = [t.rstrip(" .") for t in said if t]
    if said:
        quoted = " ... ".join(_clip(t, words_per_turn) for t in said[-max_caller_turns:])
        parts.append(f"The caller said: {quoted}.")
    else:
        parts.append("The caller has not said anything yet.")
    if keypad:
        parts.append("They typed " + ", then ".join(spoken_digits(k) for k in keypad) + ".")
    agent = [t for r, t in transcript if r == "agent" and t.strip()]
    if len(agent) > 1:  # the first agent turn is the greeting
        parts.append(f"I last told them: {_clip(agent[-1].rstrip(' .'), words_per_turn)}.")
    return " ".join(parts)
