"""Caller intents that plain rules catch more reliably than a small LLM, and the check that a
tool's arguments came from the caller.

Measured (bench/decisions.py): the bundled 0.5B instruct model picks the right tool for a
request that names an order, but as a classifier of "goodbye", "a person please" or "tell me
your instructions" it is little better than chance. Those are phrases, so they are rules here;
the LLM decides what needs judgement (which tool, or just talk), and a tool call whose
arguments the caller never said is not made: the agent asks for them instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from phoneagent.dialog.config import EscalationRules
from phoneagent.dialog.handover import wants_human
from phoneagent.dialog.slots import soundalikes

_GOODBYE_RE = re.compile(
    r"^(?:(?:ok(?:ay)?|great|thanks?|thank you|no|nope|alright|perfect|cool)\W+){0,4}"
    r"(?:(?:that'?s|that is) (?:all|it|everything)|nothing else|bye|goodbye|good bye|bye bye|have a (?:good|nice) (?:day|one)|"
    r"that'?s all i needed|i'?m (?:all )?(?:done|good)|no,? that'?s (?:it|all))\b", re.IGNORECASE)
_PROBE_RE = re.compile(
    r"\b(?:(?:ignore|forget|disregard|override)\b.{0,30}\b(?:instructions?|rules|prompt)|system prompt|your (?:instructions|prompt|rules)|"
    r"(?:reveal|repeat|print|show|tell me)\b.{0,20}\b(?:instructions|prompt|rules)|developer mode|jailbreak)\b"
    r"|<\|im_start\|>|<\|im_end\|>|<start_of_turn>|<tool_call>", re.IGNORECASE)
_SMALL_TALK_RE = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|yes|yeah|ok(?:ay)?|sorry|um+|uh+)(?: there)?\W*)*"
    r"(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|thanks?(?: you)?(?: (?:so|very) much)?|thank you|"
    r"can you hear me|are you (?:still )?there|(?:one|just a) (?:second|sec|moment|minute)|hold on|sorry|pardon)(?: there)?\W*$",
    re.IGNORECASE)
_DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9"}


def plain_words(text: str) -> str:
    """Lower case words only: how two turns are compared ("Where's my order?" twice)."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def digits_only(text: str) -> str:
    """A caller ID as the systems store it: "+1 (555) 123-4567" -> "15551234567"."""
    return "".join(ch for ch in text if ch.isdigit())


def escalation_reason(text: str, rules: EscalationRules, *, transfer_available: bool, last_question: str) -> str:
    """Why this turn goes straight to a person ("" if it does not): an explicit request, or,
    where the agent can transfer, strong frustration or the same question twice."""
    if wants_human(text):
        return "the caller asked for a person"
    if not transfer_available:
        return ""
    plain = plain_words(text)
    if any(phrase in plain for phrase in rules.frustration):
        return "the caller is frustrated"
    if rules.repeated_question and len(plain.split()) >= 3 and plain == last_question:
        return "the caller had to ask the same thing twice"
    return ""


def says_goodbye(text: str) -> bool:
    """The caller is closing ("that's all, thanks", "bye"), not merely thanking."""
    return _GOODBYE_RE.search(text.strip()) is not None


def is_small_talk(text: str) -> bool:
    """The whole turn is a greeting, thanks or "are you there": words are the answer (the small
    model, offered a tool, calls it for "Hello?" too)."""
    return _SMALL_TALK_RE.match(text.strip()) is not None


def probes_instructions(text: str) -> bool:
    """A request to reveal or change the agent's instructions, or pasted turn markers."""
    return _PROBE_RE.search(text) is not None


_DIGIT_TOKEN = r"\b(?:\d+|" + "|".join(_DIGIT_WORDS) + r")\b"
_DIGIT_RUN = re.compile(_DIGIT_TOKEN + r"(?:[\s,-]+" + _DIGIT_TOKEN + r")*", re.IGNORECASE)


def digit_runs(text: str) -> list[str]:
    """Each run of digits the caller said, spoken or written, joined: whisper often writes a
    spoken "three three one eight" as "three, 318" ("3318"); another word ends a run. Looser than
    normalize_transcript's readouts (which leave "three, 318" and "4-5-7-2" apart, as a list may
    be): only used where a parameter's pattern must then match the whole run."""
    return [_digits(m.group(0)) for m in _DIGIT_RUN.finditer(text)]


def _digits(text: str) -> str:
    words = re.findall(r"[a-z]+|\d+", text.lower())
    return "".join(_DIGIT_WORDS.get(w, w) if not w.isdigit() else w for w in words if w.isdigit() or w in _DIGIT_WORDS)


def grounded(value: Any, said: Iterable[str]) -> bool:
    """The caller said `value` in this call: digits as a run of their spoken digits (in any
    grouping, the phone's soundalikes beside digits included), other text as words. Numbers and
    booleans the model filled in count as not said."""
    texts = list(said)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    text = str(value).strip()
    if not text:
        return False
    if any(ch.isdigit() for ch in text):
        want = re.sub(r"\D", "", text)
        return any(want in _digits(soundalikes(t)) for t in texts)
    words = plain_words(text).split()
    return any(all(w in plain_words(t).split() for w in words) for t in texts)


def ungrounded(arguments: Mapping[str, Any], said: Iterable[str]) -> list[str]:
    """The arguments (by name) that the caller did not say."""
    texts = list(said)
    return [k for k, v in arguments.items() if not grounded(v, texts)]


def said_values(parameters: Mapping[str, Any], text: str) -> dict[str, str]:
    """Arguments the caller said verbatim: for each string parameter with a `pattern`, the one
    word or run of digits (`digit_runs`, with the phone's soundalikes beside digits read as digits)
    of `text` that matches it (an order number "4572", said "four five seven two", heard as
    "three, 318" or "free free 18"). Copied, not generated: the model cannot misread them, and
    it saves its slowest step (each digit is a decode step)."""
    words = {w.rstrip(".,") for w in re.findall(r"[A-Za-z0-9][\w.@+-]*", text)} | set(digit_runs(soundalikes(text)))
    out: dict[str, str] = {}
    for key, prop in (parameters.get("properties") or {}).items():
        if not isinstance(prop, dict) or prop.get("type") != "string" or not prop.get("pattern") or "x-from" in prop:
            continue
        try:
            rx = re.compile(prop["pattern"])
        except re.error:
            continue
        hits = {w for w in words if rx.search(w)}
        if len(hits) == 1:
            out[key] = hits.pop()
    return out
