"""Capturing a phone number or an email for a tool, on virtual time: ask, read back, confirm,
repair one group, the keypad instead, and never the value the LLM wrote.

The LLM's step and the recogniser are scripted (VirtualEngines), as in test_actions_virtual.py;
the same exchange runs through the real Asterisk, STT and TTS in
test_dialog_flows_asterisk.py::test_a_phone_number_is_read_back_confirmed_and_stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from models.base import ToolCall
from phoneagent.dialog.config import AgentConfig, ToolUse
from phoneagent.dialog.slots import STT_PROMPTS
from phoneagent.tools.answer import Answer
from phoneagent.tools.webhook import ToolResult
from tests.dialog.test_actions_virtual import Run, start  # noqa: F401  (the fixture)
from tests.fakes import FakeControl, Heard

CALLBACK = ToolUse(
    "request_callback", "the caller wants a call back",
    {"type": "object", "properties": {"phone": {"type": "string", "x-slot": "phone"}}, "required": ["phone"]},
    filler="", answer=Answer(text="Done. We'll call you back on {phone:digits}."), ask="What number should we call you back on?")
SIGNUP = ToolUse(
    "send_brochure", "email the brochure",
    {"type": "object", "properties": {"email": {"type": "string", "x-slot": "email"}}, "required": ["email"]},
    filler="", answer=Answer(text="Sent."), ask="What is your email address?")
OK = {"request_callback": [ToolResult(True, data={"ok": True}, status=200, duration_s=0.1, attempts=1)],
      "send_brochure": [ToolResult(True, data={"ok": True}, status=200, duration_s=0.1, attempts=1)]}


async def exchange(run: Run, n_agent: int) -> None:
    """The caller speaks once; wait until the agent has said its `n_agent`-th thing."""
    await run.turn()
    await run.until(lambda: len(run.agent_texts()) >= n_agent)


def slot_events(run: Run) -> list[tuple[str, dict[str, Any]]]:
    return [(k, d) for _, k, d in run.dialog.events if k.startswith("slot_")]


async def test_a_number_is_asked_for_read_back_confirmed_and_only_then_used(start) -> None:  # type: ignore[no-untyped-def]
    run = await start([Heard("Can you call me back?"), Heard("Five five five, two three four, nine eight seven six."), Heard("Yes.")],
                      acts=[ToolCall("request_callback", {"phone": "5551234567"})], results=OK, tools=(CALLBACK,))
    await exchange(run, 2)
    assert run.agent_texts()[-1] == "What number should we call you back on?"
    assert run.tools.calls == []  # the model's invented number is never used
    await exchange(run, 3)
    assert run.engines.stt_prompts[-1] == STT_PROMPTS["phone"][0]  # the recogniser was told a number is coming
    assert run.agent_texts()[-1] == "That's 5 5 5, 2 3 4, 9 8 7 6. Is that right?"
    assert run.tools.calls == []
    await exchange(run, 4)
    assert run.engines.stt_prompts[-1] is None  # a yes/no is no number
    assert run.tools.calls == [("request_callback", {"phone": "5552349876"})]
    assert run.agent_texts()[-1] == "Done. We'll call you back on 5 5 5 2 3 4 9 8 7 6."
    assert [k for k, _ in slot_events(run)] == ["slot_ask", "slot_read_back", "slot_confirmed"]
    assert run.event("slot_confirmed") == {"name": "phone", "value": "5552349876", "typed": False, "rounds": 1}
    callers = [t["text"] for t in run.dialog.turns if t["role"] == "caller"]
    assert callers[1:] == ["Five five five, two three four, nine eight seven six.", "Yes."]  # every turn is in the record
    await run.finish()


async def test_no_with_one_group_corrects_that_group(start) -> None:  # type: ignore[no-untyped-def]
    run = await start([Heard("Call me back on 555 234 9876 please."), Heard("No, nine eight seven seven at the end."), Heard("Yes.")],
                      acts=[ToolCall("request_callback", {"phone": "5552349876"})], results=OK, tools=(CALLBACK,))
    await exchange(run, 2)
    assert run.agent_texts()[-1] == "That's 5 5 5, 2 3 4, 9 8 7 6. Is that right?"  # said in the first turn: read back at once
    await exchange(run, 3)
    assert run.agent_texts()[-1] == "That's 5 5 5, 2 3 4, 9 8 7 7. Is that right?"
    assert run.event("slot_repaired") == {"name": "phone", "was": "5552349876", "now": "5552349877",
                                          "text": "No, nine eight seven seven at the end."}
    await exchange(run, 4)
    assert run.tools.calls == [("request_callback", {"phone": "5552349877"})]
    await run.finish()


async def test_a_plain_no_asks_again_and_the_keypad_is_taken_without_a_read_back(start) -> None:  # type: ignore[no-untyped-def]
    run = await start([Heard("Call me back on 555 234 9876."), Heard("No.")],
                      acts=[ToolCall("request_callback", {"phone": "5552349876"})], results=OK, tools=(CALLBACK,))
    await exchange(run, 2)
    await exchange(run, 3)
    assert run.agent_texts()[-1] == ("Sorry about that. Could you say the phone number again, or type it on your keypad and "
                                     "press hash?")
    for d in "4155550123#":
        run.call.press(d)
        await run.clock.run(0.15)
    await run.until(lambda: len(run.agent_texts()) >= 4)
    assert run.tools.calls == [("request_callback", {"phone": "4155550123"})]  # typed: certain, no read-back
    assert run.event("slot_confirmed")["typed"] is True
    await run.finish()


async def test_a_part_after_a_no_repairs_the_number_read_back_before(start) -> None:  # type: ignore[no-untyped-def]
    run = await start([Heard("Call me back on 555 234 9876."), Heard("No."), Heard("Two three five."), Heard("Yes.")],
                      acts=[ToolCall("request_callback", {"phone": "5552349876"})], results=OK, tools=(CALLBACK,))
    for n in (2, 3, 4, 5):
        await exchange(run, n)
    assert run.agent_texts()[3] == "That's 5 5 5, 2 3 5, 9 8 7 6. Is that right?"
    assert run.tools.calls == [("request_callback", {"phone": "5552359876"})]
    await run.finish()


async def test_a_caller_who_moves_on_leaves_the_capture(start) -> None:  # type: ignore[no-untyped-def]
    run = await start([Heard("Can you call me back?"), Heard("What time do you close today?")],
                      acts=[ToolCall("request_callback", {"phone": ""}), None], results=OK, tools=(CALLBACK,))
    await exchange(run, 2)
    await exchange(run, 3)
    assert run.event("slot_dropped")["why"] == "the caller moved on"
    assert run.engines.prompts[-1][-1].content == "What time do you close today?"  # the LLM took the turn
    assert run.tools.calls == []
    await run.finish()


async def test_a_number_never_understood_ends_in_a_person_or_an_honest_sentence(start) -> None:  # type: ignore[no-untyped-def]
    run = await start([Heard("Can you call me back?")] + [Heard("It's 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6.")] * 5,
                      acts=[ToolCall("request_callback", {"phone": ""})], results=OK, tools=(CALLBACK,), slot_max_rounds=2)
    for n in (2, 3, 4, 5):
        await exchange(run, n)
    assert run.agent_texts()[2:4] == ["Sorry, I didn't get the whole phone number. Could you say it again, or type it on your keypad "
                                      "and press hash?"] * 2
    assert run.agent_texts()[4] == AgentConfig().slot_give_up.format(what="phone number")
    assert run.event("slot_dropped")["why"] == "too many tries" and run.tools.calls == []
    await run.finish()

    control = FakeControl(outcome="accepted")
    run = await start([Heard("Can you call me back?")] + [Heard("It's 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6.")] * 5,
                      acts=[ToolCall("request_callback", {"phone": ""})], results=OK, tools=(CALLBACK,), slot_max_rounds=1,
                      control=control)
    for n in (2, 3):
        await exchange(run, n)
    await run.turn()
    await run.until(lambda: run.task.done() or "transfer" in run.kinds())
    assert "could not get the caller's phone number" in control.summaries[0]
    await run.finish()


async def test_an_email_is_spelled_back(start) -> None:  # type: ignore[no-untyped-def]
    """An email answer is recognised once per slot prompt (words, then spelled); the surer text wins."""
    run = await start([Heard("Please email me the brochure."),
                       Heard("It's john dot smith at example dot com.", confidence=0.8),  # told to expect words
                       Heard("It's J-O-T-M-I-M-I-T-H dot com.", confidence=0.6),  # told to expect letters
                       Heard("Yes, that's right.")],
                      acts=[ToolCall("send_brochure", {"email": "john@example.com"})], results=OK, tools=(SIGNUP,))
    for n in (2, 3, 4):
        await exchange(run, n)
    assert run.engines.stt_prompts[1:3] == list(STT_PROMPTS["email"])
    assert run.agent_texts()[2] == "That's j o h n dot s m i t h at e x a m p l e dot com. Is that right?"
    assert run.tools.calls == [("send_brochure", {"email": "john.smith@example.com"})]
    await run.finish()


async def test_after_a_no_an_email_is_asked_for_letter_by_letter(start) -> None:  # type: ignore[no-untyped-def]
    """A misheard email refused: the agent asks for it spelled; the spelled prompt's surer text,
    with a letter heard as a word ("and" for n), is read back and only that is used."""
    run = await start([Heard("Please email me the brochure."),
                       Heard("It's jon dot smith at example dot com.", confidence=0.7), Heard("J-O-T-M-I-M.", confidence=0.5),
                       Heard("No."),
                       Heard("dot smith", confidence=0.2), Heard("J-O-H and dot S-M-I-T-H at example dot com.", confidence=0.85),
                       Heard("Yes.")],
                      acts=[ToolCall("send_brochure", {"email": "john@example.com"})], results=OK, tools=(SIGNUP,))
    for n in (2, 3, 4, 5, 6):
        await exchange(run, n)
    said = run.agent_texts()
    assert said[2] == "That's j o n dot s m i t h at e x a m p l e dot com. Is that right?"
    assert said[3] == "Sorry about that. Could you spell the email address for me, letter by letter?"
    assert said[4] == "That's j o h n dot s m i t h at e x a m p l e dot com. Is that right?"
    assert run.engines.stt_prompts[4:6] == list(STT_PROMPTS["email"])
    assert run.tools.calls == [("send_brochure", {"email": "john.smith@example.com"})]
    assert [k for k, _ in slot_events(run)] == ["slot_ask", "slot_read_back", "slot_retry", "slot_read_back", "slot_confirmed"]
    await run.finish()


async def test_a_next_best_text_of_the_right_length_is_read_back(start) -> None:  # type: ignore[no-untyped-def]
    ten = ToolUse(CALLBACK.name, CALLBACK.description,
                  {"type": "object", "properties": {"phone": {"type": "string", "x-slot": "phone", "minLength": 10, "maxLength": 10}}},
                  filler="", answer=CALLBACK.answer, ask=CALLBACK.ask)
    dropped = Heard("5 5, 2 3 4, 9 8 7 6.", alternatives=("5 5 2 3 4 9 8 7 6", "5 5 5, 2 3 4, 9 8 7 6.", "5 5 5 5, 2 3 4, 9 8 7 6."))
    run = await start([Heard("Can you call me back?"), dropped, Heard("Yes.")],
                      acts=[ToolCall("request_callback", {})], results=OK, tools=(ten,))
    for n in (2, 3, 4):
        await exchange(run, n)
    assert run.agent_texts()[2] == "That's 5 5 5, 2 3 4, 9 8 7 6. Is that right?"  # nine digits heard best, ten next
    assert run.tools.calls == [("request_callback", {"phone": "5552349876"})]
    assert [t["text"] for t in run.dialog.turns if t["role"] == "caller"][1] == "5 5, 2 3 4, 9 8 7 6."  # stored as heard
    await run.finish()


async def test_a_number_said_in_pieces_is_put_together(start) -> None:  # type: ignore[no-untyped-def]
    """The endpointer ends the turn at a pause inside the number: the digits so far are kept,
    the agent says "Mm-hm." and the rest completes the number."""
    run = await start([Heard("Can you call me back?"), Heard("Five five five,"), Heard("two three four, nine eight seven six."),
                       Heard("Yes.")],
                      acts=[ToolCall("request_callback", {})], results=OK, tools=(CALLBACK,))
    for n in (2, 3, 4, 5):
        await exchange(run, n)
    assert run.agent_texts()[2:4] == ["Mm-hm.", "That's 5 5 5, 2 3 4, 9 8 7 6. Is that right?"]
    assert run.engines.stt_prompts[2] == STT_PROMPTS["phone"][0]  # the rest is still a number coming
    assert run.event("slot_partial") == {"name": "phone", "digits": "555"}
    assert run.tools.calls == [("request_callback", {"phone": "5552349876"})]
    await run.finish()


DELIVERY = ToolUse(
    "move_delivery", "the caller wants the delivery on another day",
    {"type": "object", "properties": {"day": {"type": "string", "x-slot": "date"}}, "required": ["day"]},
    filler="", answer=Answer(text="Done, it comes on {day}."), ask="Which day would suit you?")
REFUND = ToolUse(
    "refund", "refund an amount",
    {"type": "object", "properties": {"amount": {"type": "string", "x-slot": "amount", "x-currency": "USD"}}, "required": ["amount"]},
    filler="", answer=Answer(text="Refunded."), ask="How much should we refund?")
MOVED = {"move_delivery": [ToolResult(True, data={"ok": True}, status=200, duration_s=0.1, attempts=1)],
         "refund": [ToolResult(True, data={"ok": True}, status=200, duration_s=0.1, attempts=1)]}


async def test_a_date_is_read_back_with_its_weekday_corrected_and_used_as_iso(start) -> None:  # type: ignore[no-untyped-def]
    """"Next Tuesday" is resolved against the call's day (the dialog's wall clock: Wednesday
    2026-12-02), read back with its weekday; "no, Wednesday" replaces it; the tool gets ISO 8601."""
    run = await start([Heard("Can you deliver on another day?"), Heard("Next Tuesday."), Heard("No, on Wednesday."), Heard("Yes.")],
                      acts=[ToolCall("move_delivery", {"day": "2026-12-05"})], results=MOVED, tools=(DELIVERY,),
                      wall_clock=lambda: datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    await exchange(run, 2)
    assert run.agent_texts()[-1] == "Which day would suit you?" and run.tools.calls == []
    await exchange(run, 3)
    assert run.engines.stt_prompts[-1] == STT_PROMPTS["date"][0]
    assert run.agent_texts()[-1] == "That's Tuesday, December 8th, 2026. Is that right?"
    await exchange(run, 4)
    assert run.agent_texts()[-1] == "That's Wednesday, December 9th, 2026. Is that right?"
    await exchange(run, 5)
    assert run.tools.calls == [("move_delivery", {"day": "2026-12-09"})]  # never the model's 2026-12-05
    assert run.event("slot_repaired") is not None and run.event("slot_confirmed")["value"] == "2026-12-09"
    await run.finish()


async def test_an_amount_is_read_back_in_dollars_and_cents(start) -> None:  # type: ignore[no-untyped-def]
    run = await start([Heard("I want a refund."), Heard("Forty two dollars and fifty cents."), Heard("That's right.")],
                      acts=[ToolCall("refund", {"amount": "100"})], results=MOVED, tools=(REFUND,))
    for n in (2, 3, 4):
        await exchange(run, n)
    assert run.engines.stt_prompts[1] == STT_PROMPTS["amount"][0]
    assert run.agent_texts()[2] == "That's 42 dollars and 50 cents. Is that right?"
    assert run.tools.calls == [("refund", {"amount": "42.50"})]
    await run.finish()


async def test_a_read_back_date_is_corrected_by_its_day_alone(start) -> None:  # type: ignore[no-untyped-def]
    run = await start([Heard("Can you deliver on another day?"), Heard("The fifth of March."), Heard("No, the sixth."), Heard("Yes.")],
                      acts=[ToolCall("move_delivery", {"day": "2026-12-05"})], results=MOVED, tools=(DELIVERY,),
                      wall_clock=lambda: datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    for n in (2, 3, 4, 5):
        await exchange(run, n)
    assert run.agent_texts()[2] == "That's Friday, March 5th, 2027. Is that right?"
    assert run.agent_texts()[3] == "That's Saturday, March 6th, 2027. Is that right?"
    assert run.tools.calls == [("move_delivery", {"day": "2027-03-06"})]
    await run.finish()
