"""The whole dialog (CallDialog with all its parts) on virtual time: ManualClock drives every
timer (pacing, timeouts, filler delay, watchdog), so these calls of many seconds run in
milliseconds and their timings are exact. Engines, the call's media and call control are the
virtual-time fakes in tests/fakes.py; the same behaviours run through the real engines and the
real Asterisk in test_session.py and the *_asterisk tests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from media.clock import ManualClock
from models.base import EngineError
from models.scheduler import EngineBusy
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.context import CUT_MARK
from phoneagent.dialog.session import CallDialog
from audiosocket.protocol import Audio, Kind
from tests.dialog.conftest import GREETING
from tests.fakes import VOICED, FakeControl, Heard, Said, VirtualCall


async def test_a_turn_is_answered_with_exact_virtual_timings(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("What time do you open?", delay_s=0.2)], said=[Said("We open at nine.", first_s=0.15)])
    assert run.agent_texts() == [GREETING]
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: len(run.dialog.turns) == 3)
    caller, agent = run.dialog.turns[1], run.dialog.turns[2]
    assert caller["text"] == "What time do you open?" and agent["text"] == "We open at nine."
    timings = agent["timings"]
    assert timings.speech_end_ms <= timings.endpoint_ms < timings.first_frame_ms
    first_audio = min(t for t in run.call.agent_voiced_times() if t > t_end)
    assert first_audio - t_end < 1.0  # endpointing 0.5 s + what the fakes' delays add up to
    assert run.engines.prompts[-1][-1].content == "What time do you open?"
    await run.finish()
    assert run.dialog.outcome == "completed"


async def test_filler_after_its_delay_when_the_llm_is_slow(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Check my balance.")], said=[Said("Your balance is ten pounds.", first_s=4.0)],
                      filler_after_s=1.5, speculate=False)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: "filler" in run.kinds())
    stt_done = run.dialog.turns[-1]["timings"].stt_done_ms / 1000  # the caller's turn, stored at commit
    assert run.when("filler") == pytest.approx(stt_done + 1.5, abs=0.001)  # the delay runs from the transcript
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.agent_texts()[-1] == "Your balance is ten pounds."
    assert "One moment." in run.engines.spoken  # said, not stored as a turn
    await run.finish()


async def test_no_filler_when_the_reply_is_quick(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Hi.")], said=[Said("Hello, how can I help?", first_s=0.2)])
    run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: len(run.agent_texts()) == 2)
    await run.clock.run(3.0)
    assert "filler" not in run.kinds()
    await run.finish()


async def test_clarify_then_fallback_after_max_clarifications(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard(""), Heard("mumble", confidence=0.1), Heard("")], max_clarifications=2)
    t = run.clock.now() + 0.5
    for _ in range(3):
        t = run.call.say(at=t, seconds=0.8) + 4.0
    await run.until(run.task.done, limit=30.0)
    assert run.kinds().count("unclear") == 3
    assert run.agent_texts()[1:3] == [AgentConfig().clarify] * 2
    assert run.agent_texts()[-1] == AgentConfig().fallback
    assert "engine_error" in run.kinds() and run.dialog.outcome == "error"
    assert run.call.hung_up  # ended cleanly by the agent after the apology
    await run.finish()


async def test_engine_busy_gets_the_busy_prompt_and_the_call_goes_on(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard(error=EngineBusy("stt", "queue full", 32)), Heard("Are you there?")],
                      said=[Said("Yes, I am here.")])
    t = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: "busy" in run.kinds())
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.agent_texts()[1] == AgentConfig().busy
    run.call.say(at=max(run.clock.now(), t) + 1.0, seconds=0.8)
    await run.until(lambda: len(run.agent_texts()) == 3)
    assert run.agent_texts()[2] == "Yes, I am here." and run.dialog.outcome == "completed"
    await run.finish()


async def test_a_hung_llm_times_out_into_the_spoken_fallback(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Hello?")], said=[Said("never", first_s=60.0)], first_token_timeout_s=8.0)
    run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(run.task.done)
    assert run.agent_texts()[-1] == AgentConfig().fallback and run.dialog.outcome == "error"
    stt_done = run.dialog.turns[1]["timings"].stt_done_ms / 1000
    assert run.when("engine_error") == pytest.approx(stt_done + 8.0, abs=0.001)  # the first-token timeout
    errors = [d for _, k, d in run.dialog.events if k == "engine_error"]
    assert len(errors) == 1 and "TimeoutError" in errors[0]["error"]
    await run.finish()


async def test_a_fallback_made_ahead_is_played_and_is_the_last_thing_the_caller_hears(start) -> None:  # type: ignore[no-untyped-def]
    """The service synthesises the fallback at start (a failed TTS cannot say it then): it is
    played from that audio, recorded as heard, and the call ends on it."""
    fallback = AgentConfig().fallback
    ahead = {(fallback, VirtualCall.RATE): b"\x00\x40" * (VirtualCall.RATE * 3)}  # 3 s of loud "speech"
    run = await start(heard=[Heard("Hello?")], said=[Said("never", first_s=60.0)], first_token_timeout_s=8.0, no_input_s=2.0, filler_after_s=30.0,
                      phrases=ahead)
    run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(run.task.done, limit=60.0)
    assert fallback not in run.engines.spoken  # not synthesised: played from the audio made ahead
    assert run.agent_texts()[-1] == fallback and run.dialog.outcome == "error" and run.call.hung_up
    assert "reprompt" not in run.kinds()
    await run.finish()


async def test_a_crashed_llm_ends_in_the_spoken_fallback(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Hello?")], said=[Said("", error=EngineError("llama.cpp crashed"))])
    run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(run.task.done)
    assert run.agent_texts()[-1] == AgentConfig().fallback and run.dialog.outcome == "error"
    errors = [d for _, k, d in run.dialog.events if k == "engine_error"]
    assert len(errors) == 1 and "llama.cpp crashed" in errors[0]["error"] and run.call.hung_up
    await run.finish()


async def test_transfer_unavailable_keeps_helping(start) -> None:  # type: ignore[no-untyped-def]
    ctl = FakeControl(transfer_available=False)
    run = await start(heard=[Heard("Can I speak to a real person?")], control=ctl)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: "transfer_unavailable" in run.kinds())
    await run.until(lambda: run.agent_texts()[-1] == AgentConfig().transfer_unavailable)
    assert ctl.summaries == [] and run.dialog.outcome == "completed"
    await run.finish()


async def test_transfer_failed_brings_the_caller_back_to_the_agent(start) -> None:  # type: ignore[no-untyped-def]
    ctl = FakeControl(outcome="timeout")
    run = await start(heard=[Heard("I want to talk to a person.")], control=ctl)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: "transfer" in run.kinds())
    await run.until(lambda: run.agent_texts()[-1] == AgentConfig().transfer_failed)
    texts = run.agent_texts()
    assert texts[-2:] == [AgentConfig().transfer_notice, AgentConfig().transfer_failed]
    assert ctl.heard_by_person and "talk to a person" in ctl.heard_by_person[0]  # the person heard the caller's words
    assert run.dialog.summary == ctl.summaries[0]
    assert not run.task.done()  # still with the agent
    await run.finish()
    assert run.dialog.outcome == "completed"


async def test_transfer_accepted_ends_the_agents_part(start) -> None:  # type: ignore[no-untyped-def]
    ctl = FakeControl(outcome="accepted")
    run = await start(heard=[Heard("Put me through to an agent please.")], control=ctl)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: "transfer" in run.kinds())
    run.call.caller_hangup()  # Asterisk hangs up the agent's leg once the caller is bridged on
    await run.finish()
    assert run.dialog.outcome == "transferred"


class WritesSeen:
    """Stands in for db.AsyncCallStore to see what the dialog asks it to write (the columns
    themselves are tested against SQLite and PostgreSQL in tests/db)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        async def write(*args: Any, **kw: Any) -> int:
            self.writes.append((name, args, kw))
            return 0
        return write

    def of(self, name: str) -> list[dict[str, Any]]:
        return [kw for n, _, kw in self.writes if n == name]


async def test_audio_still_queued_when_the_caller_hangs_up_is_skipped(start) -> None:  # type: ignore[no-untyped-def]
    """A box that fell behind has the caller's last seconds queued when they hang up: the dialog
    goes straight to the hangup (caller_hangup, in time) instead of answering a caller who is gone."""
    seen = WritesSeen()
    run = await start(heard=[Heard("Are you there?")], store=seen)
    loud = VOICED.to_bytes(2, "little", signed=True) * (VirtualCall.FRAME // 2)
    for pcm in [loud] * 100 + [bytes(VirtualCall.FRAME)] * 60:  # 2 s of speech and 1.2 s of silence, queued at once
        run.call._inbound.put_nowait(Audio(Kind.SLIN16, VirtualCall.RATE, pcm))
    run.call.caller_hangup()
    await run.finish()
    assert [t for t in run.dialog.turns if t["role"] == "caller"] == []
    assert seen.of("finish_call")[0]["end_reason"] == "caller_hangup"


async def test_the_record_says_who_was_called_where_the_transfer_went_and_why(start) -> None:  # type: ignore[no-untyped-def]
    seen = WritesSeen()
    run = await start(heard=[Heard("Put me through to an agent please.")], control=FakeControl(outcome="accepted"), store=seen)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: "transfer" in run.kinds())
    run.call.caller_hangup()
    await run.finish()
    assert seen.of("start_call")[0]["callee"] == "200"
    end = seen.of("finish_call")[0]
    assert end["outcome"] == "transferred" and end["transfer_target"] == "PJSIP/fake-desk"
    assert end["disposition"] and "person" in end["disposition"], end  # the reason the handover was made


async def test_a_supervisor_hands_the_call_to_a_person_from_outside_the_call(start) -> None:  # type: ignore[no-untyped-def]
    """The console's transfer button: the agent stops, gives its notice and transfers, with the
    conversation so far in the summary; a second press while it transfers is refused."""
    ctl = FakeControl(outcome="accepted")
    run = await start(heard=[Heard("I need to change my address.")], said=[Said("Sure, what is the new address?")], control=ctl)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.dialog.ask_for_handover("a supervisor sent the call to a person from the console")
    await run.until(lambda: "transfer" in run.kinds())
    assert not run.dialog.ask_for_handover("again")  # already transferred: nothing to do twice
    assert "handover_asked" in run.kinds() and ctl.summaries and "change my address" in ctl.summaries[0]
    run.call.caller_hangup()
    await run.finish()
    assert run.dialog.outcome == "transferred"


async def test_no_handover_from_outside_without_anyone_to_take_the_call(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(control=FakeControl(transfer_available=False))
    assert not run.dialog.ask_for_handover("a supervisor asked")
    await run.finish()


async def test_a_cut_reply_is_stored_as_heard_with_what_was_generated_beside_it(start) -> None:  # type: ignore[no-untyped-def]
    long = "Our opening hours are eight in the morning to six in the evening from Monday to Friday."
    seen = WritesSeen()
    run = await start(heard=[Heard("Hours?"), Heard("Stop, thanks.")], said=[Said(long, token_s=0.2), Said("Sure.")], store=seen)
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    run.call.say(at=run.clock.now() + 0.3, seconds=1.2)
    await run.until(lambda: len(run.agent_texts()) == 3)
    await run.finish()
    cut = [kw for _, args, kw in seen.writes if _ == "add_turn" and kw.get("interrupted")]
    heard = next(args[2] for n, args, kw in seen.writes if n == "add_turn" and kw.get("interrupted"))
    # Generation stops at the barge-in: the whole reply is what had been generated by then.
    assert len(cut) == 1 and long.startswith(cut[0]["full_text"]) and len(heard.removesuffix(CUT_MARK)) < len(cut[0]["full_text"])
    assert all(kw.get("full_text") is None for n, _, kw in seen.writes if n == "add_turn" and not kw.get("interrupted"))


async def test_speculation_is_used_when_the_turn_ends_at_the_pause(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Opening hours?")], said=[Said("Nine to five.")])
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert "speculation_used" in run.kinds() and "speculation_dropped" not in run.kinds()
    assert len(run.engines.prompts) == 1  # the LLM ran once: the speculative run was the reply
    await run.finish()


async def test_speculation_is_dropped_when_the_caller_goes_on(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("My account is"), Heard("My account is four two.")], said=[Said("thrown away"), Said("Thanks, got it.")])
    t = run.clock.now() + 0.5
    t = run.call.say(at=t, seconds=1.0)
    run.call.say(at=t + 0.25, seconds=1.0)  # a pause past speculative_s (0.064), short of the endpoint
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.kinds().index("speculation_dropped") < run.kinds().index("speculation_used")
    assert run.agent_texts()[1] == "Thanks, got it."
    callers = [t["text"] for t in run.dialog.turns if t["role"] == "caller"]
    assert callers == ["My account is four two."]  # nothing of the dropped run was committed
    await run.finish()


async def test_barge_in_during_the_first_clause_stops_playout_within_a_frame(start) -> None:  # type: ignore[no-untyped-def]
    long = "Our opening hours are eight in the morning to six in the evening from Monday to Friday."
    run = await start(heard=[Heard("Hours?"), Heard("Stop, thanks.")], said=[Said(long, token_s=0.2), Said("Sure.")])
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    t_barge = run.clock.now() + 0.3  # the first clause is ~1.5 s of audio: still in it
    run.call.say(at=t_barge, seconds=1.2)
    await run.until(lambda: "barge_in" in run.kinds())
    fired = run.when("barge_in")
    await run.clock.run(0.2)
    after = [t for t in run.call.agent_voiced_times() if t > fired]
    assert len(after) <= 1  # at most the frame already on its way
    await run.until(lambda: len(run.agent_texts()) == 3)
    cut = run.agent_texts()[1]
    assert cut.endswith(CUT_MARK) and len(cut) < len(long)  # only what was heard is kept
    assert run.dialog.turns[2]["interrupted"] is True
    assert run.engines.cancelled == [long]  # generation was cancelled, not run to its end
    assert run.engines.prompts[-1][-2].content == cut  # the LLM saw only the heard part
    await run.finish()


async def test_fifty_barge_ins_in_one_call_each_stop_the_agent_and_the_call_goes_on(start) -> None:  # type: ignore[no-untyped-def]
    """The fault table's "50 barge-ins": every one stops playout within a frame and cancels its
    generation, each cut reply keeps only what was heard, and the 51st reply plays whole."""
    long = "Our opening hours are eight in the morning to six in the evening from Monday to Friday."
    n = 50
    run = await start(heard=[Heard(f"Question {i}.") for i in range(n + 1)], said=[Said(long, token_s=0.2)] * n + [Said("Sure.")])
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    for i in range(n):
        await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
        run.call.say(at=run.clock.now() + 0.3, seconds=0.8)
        await run.until(lambda: run.kinds().count("barge_in") == i + 1)
        fired = [t for t, k, _ in run.dialog.events if k == "barge_in"][-1]
        await run.clock.run(0.2)
        assert len([t for t in run.call.agent_voiced_times() if t > fired]) <= 1, i  # at most the frame on its way
        t_end = fired + 0.8
    await run.until(lambda: run.agent_texts()[-1:] == ["Sure."], limit=30.0)
    agent = [t for t in run.dialog.turns if t["role"] == "agent"][1:]
    assert len(agent) == n + 1 and all(t["interrupted"] for t in agent[:n]) and not agent[n]["interrupted"]
    assert all(t["text"].endswith(CUT_MARK) and len(t["text"]) < len(long) for t in agent[:n])
    assert run.engines.cancelled == [long] * n
    assert "engine_error" not in run.kinds() and not run.task.done()
    await run.finish()
    assert run.dialog.outcome == "completed"


async def test_watchdog_reprompts_then_says_goodbye(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(no_input_s=8.0, max_reprompts=1)
    greeted = run.clock.now()
    await run.until(lambda: "reprompt" in run.kinds())
    assert run.when("reprompt") == pytest.approx(greeted + 8.0, abs=0.3)
    await run.until(run.task.done, limit=60.0)
    assert run.kinds()[-1] == "no_input_hangup" and run.dialog.outcome == "no_input"
    assert run.agent_texts()[-2:] == [AgentConfig().reprompt, AgentConfig().goodbye_no_input]
    assert run.call.hung_up
    await run.finish()


async def test_a_keypad_entry_is_a_caller_turn(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(said=[Said("Thanks, account four seven one one.")])
    for d in "4711#":
        run.call.press(d)
        await run.clock.run(0.15)  # a person's key presses are >= 80 ms apart
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert [t["text"] for t in run.dialog.turns if t["role"] == "caller"] == ["(keypad) 4711"]
    await run.finish()


async def test_hangup_mid_reply_records_what_was_heard(start) -> None:  # type: ignore[no-untyped-def]
    long = "Let me read you the whole list of our branches one by one starting with the north."
    run = await start(heard=[Heard("Where are you?")], said=[Said(long)])
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    await run.clock.run(1.0)
    run.call.caller_hangup()
    await run.until(run.task.done)
    heard = run.agent_texts()[-1]
    assert heard.endswith(CUT_MARK) and run.dialog.turns[-1]["interrupted"] is True
    await run.finish()


async def test_hangup_while_the_tts_is_wedged_still_records_what_was_heard(start) -> None:  # type: ignore[no-untyped-def]
    """The next clause's synthesis never comes back (a starved CPU) when the caller hangs up:
    the reply outlives the grace for recording and is cancelled, and its record, the one
    sentence the caller heard, must not go with it (it did: the Asterisk acknowledgement test lost
    its agent turn now and then on a slow VM)."""
    long = "First I look at your account. Then I read you the whole list of our branches one by one."
    run = await start(heard=[Heard("Where are you?")], said=[Said(long, token_s=0.05)], engine={"tts_stall_at": 2})
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    await run.clock.run(2.0)  # the first sentence has played; the second is stuck in synthesis
    assert run.engines.spoken[-1] == "First I look at your account."
    run.call.caller_hangup()
    await run.until(run.task.done)
    turn = run.dialog.turns[-1]
    assert turn["role"] == "agent" and turn["text"] == "First I look at your account." + CUT_MARK and turn["interrupted"] is True
    await run.finish()


async def test_barge_in_in_the_gap_before_a_clause_still_synthesised_keeps_only_what_was_heard(start) -> None:  # type: ignore[no-untyped-def]
    """A slow CPU: each clause takes 4 s to synthesise, so the agent falls silent after its first
    clause, and the caller barges in there. The cut synthesis ends with no audio; that clause
    was never heard, so neither the record nor the context may say it was (they did: a clause
    with 0 ms of audio counted as played, and the turn read as whole)."""
    long = "First I look at your account. Then I read you the whole list of our branches one by one."
    run = await start(heard=[Heard("Where are you?"), Heard("Stop, thanks.")], said=[Said(long, token_s=0.05), Said("Sure.")],
                      engine={"tts_delay_s": 4.0}, filler_after_s=20.0)
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    first = run.call.agent_voiced_times()[-1]
    run.call.say(at=first + 1.7, seconds=0.8)  # the first clause is 1.5 s of audio: in the gap after it
    await run.until(lambda: "barge_in" in run.kinds())
    assert len(run.engines.spoken) == 2, run.engines.spoken  # the greeting, the first clause: the next is being synthesised
    first_clause = run.engines.spoken[1]
    assert long.startswith(first_clause) and len(first_clause) < len(long)
    await run.until(lambda: run.agent_texts()[-1:] == ["Sure."], limit=15.0)
    cut = [t for t in run.dialog.turns if t["role"] == "agent"][1]
    assert cut["interrupted"] is True and cut["text"] == first_clause + CUT_MARK, run.dialog.turns
    heard = [m.content for m in run.dialog.conversation.messages("") if m.role == "assistant"]
    assert heard[1] == first_clause + CUT_MARK, heard
    await run.finish()


async def test_cancelling_the_dialog_still_finalises_the_record_and_is_not_swallowed(start) -> None:  # type: ignore[no-untyped-def]
    long = "Let me read you the whole list of our branches one by one starting with the north."
    run = await start(heard=[Heard("Where are you?")], said=[Said(long, token_s=0.2)])
    finished: list[str] = []

    async def finish_call(*_a: Any, **kw: Any) -> None:
        finished.append(kw["end_reason"])

    assert run.dialog.record is not None
    run.dialog.record.store = type("Store", (), {"finish_call": staticmethod(finish_call), "add_turn": staticmethod(_noop),
                                                 "add_event": staticmethod(_noop)})()
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    run.task.cancel()  # service shutdown: the handler task is cancelled mid-reply
    await run.clock.run(until=run.task.done, limit=10)
    assert run.task.cancelled()  # the cancellation propagated, it was not swallowed
    assert finished == ["interrupted"]  # and the record was still closed on the way out


async def test_a_cancel_during_the_clean_up_still_finishes_the_record(start) -> None:  # type: ignore[no-untyped-def]
    """The server cancels a handler that has not finished within its grace after the call ended
    (an overloaded box: the store's writer is backed up). The clean-up's own writes may be cut
    off, but the call's record must still be finished: it was left open until the next start."""
    long = "Let me read you the whole list of our branches one by one starting with the north."
    run = await start(heard=[Heard("Where are you?")], said=[Said(long, token_s=0.2)])
    finished: list[str] = []
    stuck = asyncio.Event()

    async def finish_call(*_a: Any, **kw: Any) -> None:
        finished.append(kw["end_reason"])

    async def add_turn(*_a: Any, **_k: Any) -> int:
        stuck.set()
        await asyncio.Event().wait()  # the writer never gets to it
        return 0

    assert run.dialog.record is not None
    run.dialog.record.store = type("Store", (), {"finish_call": staticmethod(finish_call), "add_turn": staticmethod(add_turn),
                                                 "add_event": staticmethod(_noop)})()
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    run.call.caller_hangup()  # mid-reply: the clean-up records what was heard, and hangs there
    await run.until(stuck.is_set)
    run.task.cancel()
    await run.clock.run(until=run.task.done, limit=10)
    assert run.task.cancelled()
    assert finished == ["caller_hangup"]


async def _noop(*_a: Any, **_k: Any) -> None:
    return None


LONG_OPENING = "I'll close at five on Saturday, and at noon on Sunday."


async def test_a_slow_reply_speaks_its_first_words_once_the_caller_is_waiting(start) -> None:  # type: ignore[no-untyped-def]
    """The endpoint is final before the first token: the first clause goes out at 3 words."""
    run = await start(heard=[Heard("When do you close?")], said=[Said(LONG_OPENING, first_s=0.6, token_s=0.05)], speculate=False)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.engines.spoken[-2:] == ["I'll close at", "five on Saturday, and at noon on Sunday."]
    assert run.agent_texts()[-1] == LONG_OPENING  # the record and the context hold the reply, not its cuts
    await run.finish()


async def test_a_reply_ready_before_the_endpoint_keeps_its_first_phrase(start) -> None:  # type: ignore[no-untyped-def]
    """Speculation wrote the first clause before the caller was waiting: nothing is cut."""
    run = await start(heard=[Heard("When do you close?", delay_s=0.05)], said=[Said(LONG_OPENING, first_s=0.05, token_s=0.02)])
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert "speculation_used" in run.kinds()
    assert run.engines.spoken[-2:] == ["I'll close at five on Saturday,", "and at noon on Sunday."]
    await run.finish()


async def test_the_first_clause_length_is_the_agents_choice(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("When do you close?")], said=[Said(LONG_OPENING, first_s=0.6, token_s=0.05)], speculate=False,
                      first_clause_words_waiting=6)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.engines.spoken[-2:] == ["I'll close at five on Saturday,", "and at noon on Sunday."]
    await run.finish()
    with pytest.raises(ValueError, match="first_clause_words_waiting"):
        AgentConfig(first_clause_words_waiting=0)


@pytest.mark.parametrize(("token_s", "gap"), [(0.02, False), (1.0, True)])
async def test_silence_inside_the_agents_speech_is_counted(start, token_s: float, gap: bool) -> None:  # type: ignore[no-untyped-def]
    """A next clause that comes later than the last one's audio lasts leaves the caller in
    silence mid-reply; the call counts it (bench.dialog reports it per call)."""
    run = await start(heard=[Heard("What are your hours?")], said=[Said("We open at nine, and we close at five on weekdays.", token_s=token_s)])
    assert run.dialog.starved_ms == 0.0  # the greeting played whole
    run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: len(run.dialog.turns) == 3)
    # the rest's last token ~7 tokens after the first clause, whose ~4 words of audio play meanwhile
    late = 7 * token_s - 4 * run.engines.word_s
    assert run.dialog.starved_ms == (pytest.approx(late * 1000, abs=400) if gap else 0.0)
    await run.finish()
