"""Capturing a number, an email, a date or an amount for a tool: ask, read back, confirm or repair.

A tool parameter declared as a slot (see slots.py) is never taken from what the LLM wrote: the
dialog takes it from the caller's own words (or keypad), reads it back in a form that is easy to
check by ear, and calls the tool only with the value the caller confirmed. A "no" lets the
caller correct one group ("no, nine eight seven seven at the end") or say it all again; the
keypad can always enter digits instead (typed, so no read-back). While a value is expected the
recogniser is told what kind of value is coming (the slot's STT prompt).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from models.base import Message, Transcript
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.config import ToolUse
from phoneagent.dialog.record import TurnTiming
from phoneagent.dialog.slots import Slot, keypad_digits, repair, slots_of, yes_or_no
from phoneagent.dialog.voice import Voice

Phrase = Callable[[list[Message]], Awaitable[None]]  # the LLM words a tool's result (no answer template)
# Runs the tool once its slots are confirmed: (tool, arguments, confirmed values, phrase, timing).
RunTool = Callable[[ToolUse, dict[str, Any], dict[str, str], Phrase, TurnTiming], Awaitable[None]]
Handover = Callable[[str], Awaitable[None]]


@dataclass
class _Pending:
    tool: ToolUse
    arguments: dict[str, Any]  # what the step chose for the other parameters
    confirmed: dict[str, str]  # slots of this tool confirmed so far
    slot: Slot
    value: str | None = None  # read back, awaiting yes/no; None: awaiting the value
    previous: str | None = None  # the value the caller said no to (a group of it can be repaired)
    partial: str = ""  # digits said so far when a number comes in pieces ("five five five," pause, "two three four...")
    rounds: int = 0  # read-backs and retries so far


def heard_value(slot: Slot, text: str, alternatives: Sequence[str], before: str = "") -> str:
    """The value in the best text, or, when it has none of the slot's length, in the first
    next-best text that does (whisper drops one of "five five five" far more often than it
    misreads a digit); the best text's value otherwise. `before`: digits the caller said in
    earlier turns of this answer (a number said in pieces)."""
    heard = [before + slot.capture(t) for t in (text, *alternatives)]
    # whisper sometimes writes a short number twice ("4 9 7 2. 4 9 7 2."): once was said
    if not before:
        heard += [v[: len(v) // 2] for v in heard if _doubled(v)]
    return next((v for v in heard if slot.valid(v)), heard[0])


def merged(transcripts: Sequence[Transcript]) -> Transcript:
    """One answer recognised once per slot prompt (slots.STT_PROMPTS) as one transcript: the
    surest text, then its next-best texts, then the other prompts' texts, surest first, so
    `heard_value` takes the first that holds a value. Decode time is the sum."""
    ranked = sorted(transcripts, key=lambda t: -t.confidence)
    best, rest = ranked[0], ranked[1:]
    more = tuple(text for t in rest for text in (t.text, *t.alternatives))
    return replace(best, alternatives=best.alternatives + more, decode_s=sum(t.decode_s for t in transcripts))


ReadBackOutcome = Literal["typed", "confirmed", "part", "repaired", "again"]


def answer_to_read_back(slot: Slot, value: str, text: str, alternatives: Sequence[str]) -> tuple[ReadBackOutcome, str]:
    """What the caller's turn after the read-back of `value` makes of it, and the value then:
    "typed" (keys that form a value: taken as is), "confirmed" (a yes, or the same value again),
    "part" (one part named: "no, the sixth"), "repaired" (the value again or a group of it:
    "no, it's 9877 at the end"; read back again), "again" (a plain no, the refused value again,
    or nothing usable: ask for the whole value again, value "")."""
    typed = keypad_digits(text) is not None
    heard = heard_value(slot, text, alternatives)
    if typed and slot.valid(heard):
        return "typed", heard
    if yes_or_no(text) is True and (not heard or heard == value):
        return "confirmed", value
    if not heard and (part := slot.corrected(value, text)):
        return "part", part
    if heard:
        fixed = heard if slot.valid(heard) and len(heard) >= len(value) - 1 else (repair(value, heard, slot) if slot.digits else None)
        if fixed and fixed != value:  # the refused value heard again is no repair: ask afresh
            return "repaired", fixed
    return "again", ""


def _doubled(digits: str) -> bool:
    half = len(digits) // 2
    return len(digits) % 2 == 0 and half > 0 and digits[:half] == digits[half:]


class SlotCapture:
    """One call's capture of the slot a chosen tool still needs."""

    def __init__(self, ctx: CallContext, voice: Voice, run_tool: RunTool, handover: Handover) -> None:
        self.ctx = ctx
        self.voice = voice
        self.run_tool = run_tool
        self.handover = handover
        self.pending: _Pending | None = None

    @property
    def expected(self) -> Slot | None:
        """The slot whose value the caller is about to say (the recogniser is told so)."""
        p = self.pending
        return p.slot if p is not None and p.value is None else None

    def unconfirmed(self, tool: ToolUse, confirmed: dict[str, str]) -> Slot | None:
        """The tool's first slot still to capture (parameters taken from the call are not)."""
        return next((s for n, s in slots_of(tool.parameters).items() if n not in confirmed and n not in tool.from_call), None)

    async def begin(self, tool: ToolUse, arguments: dict[str, Any], confirmed: dict[str, str], slot: Slot, turn: str,
                    phrase: Phrase, timing: TurnTiming) -> None:
        """The step chose `tool`: read back the slot's value if the caller's turn had it, else ask."""
        if slot.kind == "date":  # "tomorrow", or a date without a year, is resolved against the call's day
            slot = replace(slot, today=self.ctx.today())
        p = self.pending = _Pending(tool, dict(arguments), dict(confirmed), slot)
        heard = slot.capture(turn)
        if slot.valid(heard):
            await self._got(p, heard, typed=keypad_digits(turn) is not None, phrase=phrase, timing=timing)
            return
        self.ctx.record.event("slot_ask", name=slot.name, kind=slot.kind)
        await self.voice.say(tool.ask or self.ctx.config.ask_for.format(what=slot.what), role_text="ask", timing=timing)

    def claims(self, text: str, alternatives: Sequence[str] = ()) -> bool:
        """This caller turn answers the capture in progress (a value, a yes or a no), rather
        than moving on to something else (then the capture is dropped, see `drop`)."""
        p = self.pending
        return p is not None and (bool(heard_value(p.slot, text, alternatives)) or yes_or_no(text) is not None
                                  or (p.value is not None and bool(p.slot.corrected(p.value, text))))  # "the sixth"

    def drop(self, why: str) -> None:
        p, self.pending = self.pending, None
        if p is not None:
            self.ctx.record.event("slot_dropped", name=p.slot.name, why=why)

    async def handle(self, text: str, alternatives: Sequence[str], phrase: Phrase, timing: TurnTiming) -> None:
        """The caller's turn (committed) that `claims` said belongs to the capture;
        `alternatives`: the recogniser's next-best texts for it."""
        p = self.pending
        assert p is not None
        slot, typed = p.slot, keypad_digits(text) is not None
        heard = heard_value(slot, text, alternatives)
        if p.value is None:  # the value was asked for
            # (without earlier pieces, `heard` is already that value)
            so_far = heard_value(slot, text, alternatives, p.partial) if p.partial and slot.digits and not typed else heard
            value = so_far if slot.valid(so_far) else (repair(p.previous, heard, slot) if p.previous and slot.digits else None)
            if value:
                p.partial = ""
                await self._got(p, value, typed=typed, phrase=phrase, timing=timing)
            elif slot.digits and heard and not typed and len(so_far) < slot.min_len and len(p.partial) < len(so_far):
                # The caller paused inside the number (the turn ended on the pause): keep the
                # digits and let them go on.
                p.partial = so_far
                self.ctx.record.event("slot_partial", name=slot.name, digits=so_far)
                await self.voice.say(self.ctx.config.slot_go_on, role_text="go on", timing=timing)
            else:
                p.partial = ""
                await self._again(p, "unclear", timing)
            return
        outcome, value = answer_to_read_back(slot, p.value, text, alternatives)
        if outcome == "typed":
            await self._confirmed(p, value, phrase, timing, typed=True)
        elif outcome == "confirmed":
            await self._confirmed(p, value, phrase, timing, typed=False)
        elif outcome in ("part", "repaired"):
            self.ctx.record.event("slot_repaired", name=slot.name, was=p.value, now=value, text=text)
            await self._got(p, value, typed=typed and outcome == "repaired", phrase=phrase, timing=timing)
        else:
            p.previous, p.value = p.value, None
            await self._again(p, "again", timing)

    async def _got(self, p: _Pending, value: str, *, typed: bool, phrase: Phrase, timing: TurnTiming) -> None:
        """A value: typed ones are certain; spoken ones are read back."""
        if typed:
            await self._confirmed(p, value, phrase, timing, typed=True)
            return
        if await self._too_many(p):
            return
        p.value = value
        self.ctx.record.event("slot_read_back", name=p.slot.name, value=value)
        await self.voice.say(self.ctx.config.read_back.format(value=p.slot.read_back(value), what=p.slot.what),
                             role_text="read back", timing=timing)

    async def _again(self, p: _Pending, why: str, timing: TurnTiming) -> None:
        if await self._too_many(p):
            return
        cfg = self.ctx.config
        text = cfg.slot_spell if p.slot.kind == "email" else cfg.slot_again if why == "again" else cfg.slot_unclear
        keypad = cfg.or_keypad if p.slot.digits else ""
        self.ctx.record.event("slot_retry", name=p.slot.name, why=why)
        await self.voice.say(text.format(what=p.slot.what, or_keypad=keypad), role_text="ask again", timing=timing)

    async def _too_many(self, p: _Pending) -> bool:
        """After `slot_max_rounds` read-backs and retries: a person where one can take over,
        else an honest sentence, and the capture ends."""
        p.rounds += 1
        if p.rounds <= self.ctx.config.slot_max_rounds:
            return False
        self.drop("too many tries")
        ctl = self.ctx.control
        if ctl is not None and ctl.transfer_available:
            await self.handover(f"the agent could not get the caller's {p.slot.what}")
        else:
            await self.voice.say(self.ctx.config.slot_give_up.format(what=p.slot.what), role_text="give up")
        return True

    async def _confirmed(self, p: _Pending, value: str, phrase: Phrase, timing: TurnTiming, *, typed: bool) -> None:
        self.pending = None
        self.ctx.record.event("slot_confirmed", name=p.slot.name, value=value, typed=typed, rounds=p.rounds)
        await self.run_tool(p.tool, p.arguments, {**p.confirmed, p.slot.name: value}, phrase, timing)
