"""Turn-taking in the whole dialog on virtual time: speech over the agent judged by its words
(an acknowledgement is no turn, a short "no" still interrupts), and the end of a turn moved by
the end-of-turn model or by words that stop mid-sentence. The same through the real Asterisk:
test_dialog_flows_asterisk.py."""

from __future__ import annotations

import pytest

from phoneagent.dialog.context import CUT_MARK
from tests.fakes import Heard, Said


LONG = "Our opening hours are eight in the morning to six in the evening from Monday to Friday."


async def test_an_acknowledgement_over_the_agent_is_no_turn_and_the_agent_carries_on(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Hours?"), Heard("Mm-hmm.", delay_s=0.15)], said=[Said(LONG, token_s=0.05)])
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    t_mm = run.clock.now() + 0.5
    mm_end = run.call.say(at=t_mm, seconds=0.6)  # past barge_in_min_s (0.3 s), short of backchannel_max_s (1.2 s)
    await run.until(lambda: "backchannel" in run.kinds())
    assert run.event("backchannel")["text"] == "Mm-hmm."
    resumed = run.when("backchannel")
    assert resumed - mm_end < 0.35  # the pause (0.12 s) and the transcription (0.15 s)
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.agent_texts()[1] == LONG and not run.dialog.turns[-1]["interrupted"]  # nothing was cut or lost
    assert "barge_in" not in run.kinds()
    assert [t["text"] for t in run.dialog.turns if t["role"] == "caller"] == ["Hours?"]  # "mm-hmm" is no turn
    assert run.engines.cancelled == []
    held = [t for t in run.call.agent_voiced_times() if t_mm + 0.05 < t < resumed - 0.05]
    assert held == []  # the agent was on hold (silent) while the words were checked
    await run.finish()


async def test_a_short_no_over_the_agent_still_interrupts_and_is_answered(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Hours?"), Heard("No.")], said=[Said(LONG, token_s=0.2), Said("Sorry. What do you need?")])
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    t_no = run.clock.now() + 0.3
    run.call.say(at=t_no, seconds=0.26)  # shorter than barge_in_min_s: only its word makes it count
    await run.until(lambda: len(run.agent_texts()) == 3)
    kinds = run.kinds()
    assert "overlap_held" in kinds and "barge_in" in kinds and "backchannel" not in kinds
    assert run.agent_texts()[1].endswith(CUT_MARK) and run.agent_texts()[2] == "Sorry. What do you need?"
    assert [t["text"] for t in run.dialog.turns if t["role"] == "caller"] == ["Hours?", "No."]
    assert run.engines.transcriptions == 2  # the check's transcript was the turn's: no second STT
    silent = [t for t in run.call.agent_voiced_times() if t_no + 0.05 < t < run.when("barge_in")]
    assert silent == []  # the agent went quiet at the onset, before the words were known
    await run.finish()


async def test_an_acknowledgement_transcribed_after_the_endpoint_is_still_no_turn(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Hours?"), Heard("Yeah, okay.", delay_s=0.9)], said=[Said(LONG, token_s=0.05)])
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    run.call.say(at=run.clock.now() + 0.3, seconds=0.5)  # STT (0.9 s) is slower than the endpoint (0.5 s)
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.agent_texts()[1] == LONG and "barge_in" not in run.kinds() and "backchannel" in run.kinds()
    assert [t["text"] for t in run.dialog.turns if t["role"] == "caller"] == ["Hours?"]
    await run.finish()


async def test_a_short_wordless_sound_over_the_agent_is_ignored(start) -> None:  # type: ignore[no-untyped-def]
    run = await start(heard=[Heard("Hours?"), Heard("")], said=[Said(LONG, token_s=0.05)])
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    run.call.say(at=run.clock.now() + 0.3, seconds=0.26)  # a click or a cough the VAD took for speech
    await run.until(lambda: len(run.agent_texts()) == 2)
    assert run.agent_texts()[1] == LONG and "barge_in" not in run.kinds() and "backchannel" in run.kinds()
    await run.finish()


@pytest.mark.parametrize(("withheld", "acknowledged"), [("Uh uh.", True), ("up.", False), ("", False)])
async def test_held_speech_whisper_blanked_counts_only_when_its_withheld_words_acknowledge(  # type: ignore[no-untyped-def]
        start, withheld: str, acknowledged: bool) -> None:
    """0.6 s over the agent that the recogniser blanked as "not speech": its withheld words
    decide. "Uh uh" lets the agent go on; anything else (or nothing) interrupts, as before."""
    run = await start(heard=[Heard("Hours?"), Heard("", withheld=withheld)], said=[Said(LONG, token_s=0.05), Said("Sorry?")])
    t_end = run.call.say(at=run.clock.now() + 0.5, seconds=0.8)
    await run.until(lambda: run.call.agent_talking(t_end, run.clock.now()))
    run.call.say(at=run.clock.now() + 0.3, seconds=0.6)  # past barge_in_min_s: wordless, it would interrupt
    await run.until(lambda: "backchannel" in run.kinds() or "barge_in" in run.kinds())
    if acknowledged:
        assert run.event("backchannel")["text"] == withheld
        await run.until(lambda: len(run.agent_texts()) == 2)
        assert run.agent_texts()[1] == LONG and "barge_in" not in run.kinds()
    else:
        assert "backchannel" not in run.kinds()
        await run.until(lambda: len(run.agent_texts()) >= 2)
        assert run.agent_texts()[1].endswith(CUT_MARK)
    await run.finish()


@pytest.mark.parametrize(("p", "model", "endpoint_s", "verdict"), [
    (0.95, True, 0.224, "complete"),  # sure it is over: 0.2 s of silence (7 windows of 32 ms)
    (0.05, True, 1.216, "incomplete"),  # mid-thought: up to max_delay_s
    (0.5, True, 0.512, None),  # unsure: the fixed silence, as without the model
    (0.95, False, 0.512, None),  # the agent does not use the model
])
async def test_the_end_of_turn_model_moves_the_endpoint(start, p: float, model: bool, endpoint_s: float,  # type: ignore[no-untyped-def]
                                                        verdict: str | None) -> None:
    run = await start(heard=[Heard("What time do you open?")], said=[Said("At nine.")], turn_p=[p], end_of_turn_model=model)
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: len(run.dialog.turns) == 3)
    t = run.dialog.turns[2]["timings"]
    assert (t.endpoint_ms - t.speech_end_ms) / 1000 == pytest.approx(endpoint_s, abs=0.035)
    ends = [d for _, k, d in run.dialog.events if k == "end_of_turn"]
    assert [d["verdict"] for d in ends] == ([verdict] if verdict else [])
    assert ("turn_model" in run.kinds()) == model
    await run.finish()


@pytest.mark.parametrize("words", [True, False])
async def test_words_that_stop_mid_sentence_hold_the_turn_open(start, words: bool) -> None:  # type: ignore[no-untyped-def]
    """The caller says "I want to", pauses 0.9 s and goes on. Those words end where no sentence
    does, so the turn waits (max_delay_s) and is the whole sentence; with the check off, the
    0.5 s silence cuts it in two and the agent answers half a thought."""
    run = await start(heard=[Heard("I want to"), Heard("I want to move my appointment."), Heard("move my appointment.")],
                      said=[Said("Sure, to which day?"), Said("Sure, to which day?")], unfinished_words=words)
    t0 = run.clock.now() + 0.5
    end = run.call.say(at=t0, seconds=0.8)
    run.call.say(at=end + 0.9, seconds=1.2)
    await run.until(lambda: run.clock.now() > end + 5.0)
    callers = [t["text"] for t in run.dialog.turns if t["role"] == "caller"]
    ends = [d for _, k, d in run.dialog.events if k == "end_of_turn"]
    if words:
        assert callers == ["I want to move my appointment."], callers
        assert ends == [], ends  # the held pause did not end the turn; the last words sounded finished
        assert "speculation_dropped" in run.kinds()
    else:
        assert callers[0] == "I want to" and len(callers) == 2, callers
    await run.finish()


async def test_a_turn_whose_words_stay_unfinished_ends_after_max_delay(start) -> None:  # type: ignore[no-untyped-def]
    """ "My name is, um" and nothing more: held open, then ended at max_delay_s, the record says why."""
    run = await start(heard=[Heard("My name is, um")], said=[Said("Take your time.")])
    run.call.say(at=run.clock.now() + 0.5, seconds=1.0)
    await run.until(lambda: len(run.dialog.turns) == 3)
    t = run.dialog.turns[1]["timings"]
    assert (t.endpoint_ms - t.speech_end_ms) / 1000 == pytest.approx(1.216, abs=0.035)
    ends = [d for _, k, d in run.dialog.events if k == "end_of_turn"]
    assert len(ends) == 1 and ends[0]["unfinished_words"] is True and ends[0]["verdict"] == "", ends
    await run.finish()
