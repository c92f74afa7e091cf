"""The caller's words evaluated ahead while they speak (phoneagent/dialog/ahead.py): on virtual
time with scripted engines, which job runs when and what reaches the LLM's cache; the real
whisper and llama.cpp are in tests/models/test_llama_prefill.py and test_session.py."""

from __future__ import annotations

from typing import Any

import pytest

from phoneagent.dialog.ahead import words_so_far
from tests.fakes import Heard, Said

QUESTION = "What time do you close on Saturday?"


@pytest.mark.parametrize(("heard", "kept"), [
    ("What time do you clo", "What time do you"),
    ("What time do you close on Saturday?", "What time do you close on"),
    ("Hi, I'm", "Hi,"),
    ("Hi.", ""),
    ("", ""),
    ("- ...", ""),  # no word at all
])
def test_the_last_word_heard_so_far_is_left_out(heard: str, kept: str) -> None:
    assert words_so_far(heard) == kept


async def _ask(start: Any, seconds: float, **kw: Any) -> Any:
    run = await start(heard=[Heard(QUESTION)], said=[Said("At five.")], **kw)
    end = run.call.say(at=run.clock.now() + 0.5, seconds=seconds)
    await run.until(lambda: len(run.dialog.turns) == 3)
    assert run.clock.now() > end
    return run


async def test_a_long_turn_is_evaluated_ahead_while_the_caller_speaks(start) -> None:  # type: ignore[no-untyped-def]
    """2.5 s of speech: jobs at 0.8 and 1.6 s (and 2.4 s) of the turn, each on the audio so far;
    the LLM cache gets the words without the last one, left open; the turn itself is answered
    from its own transcript as before."""
    run = await _ask(start, 2.5, engine={"llm_on_cpu": True, "ahead_text": "What time do you close"})
    e = run.engines
    assert len(e.ahead) == 3 and e.ahead[0] == pytest.approx(0.8 + 0.3, abs=0.03), e.ahead  # the turn so far + its pre-roll
    assert e.ahead == sorted(e.ahead)
    assert e.prefilled_open == ["What time do you"] * 3
    ahead = [d for _, k, d in run.dialog.events if k == "words_ahead"]
    assert [d["words"] for d in ahead] == ["What time do you"] * 3 and [d["at_s"] for d in ahead] == pytest.approx([0.8, 1.6, 2.4], abs=0.05)
    assert [t["text"] for t in run.dialog.turns if t["role"] == "caller"] == [QUESTION]
    assert run.engines.transcriptions == 1  # the turn's own STT: the jobs ahead are not the turn's
    await run.finish()


@pytest.mark.parametrize("why", ["off", "llm on a GPU", "engines busy", "short turn"])
async def test_nothing_is_evaluated_ahead_when_it_cannot_pay(start, why: str) -> None:  # type: ignore[no-untyped-def]
    engine: dict[str, Any] = {"llm_on_cpu": why != "llm on a GPU", "spare_now": why != "engines busy", "ahead_text": "What time do you close"}
    run = await _ask(start, 0.6 if why == "short turn" else 2.5, engine=engine, words_ahead_s=0.0 if why == "off" else 0.8)
    assert run.engines.ahead == [] and run.engines.prefilled_open == []
    assert "words_ahead" not in run.kinds()
    await run.finish()


async def test_no_job_ahead_runs_while_the_caller_talks_over_the_agent(start) -> None:  # type: ignore[no-untyped-def]
    """Speech over the agent is first judged by its words (an "mm-hmm" is no turn): nothing is
    evaluated ahead of it."""
    run = await start(heard=[Heard("What are your hours?"), Heard("Okay.")], said=[Said("We are open from nine to five every day of the week.")],
                      engine={"llm_on_cpu": True, "ahead_text": "okay okay"})
    run.call.say(at=run.clock.now() + 0.5, seconds=0.6)
    await run.until(lambda: run.call.agent_talking(run.clock.now() - 0.1, run.clock.now()) and len(run.dialog.turns) == 2)
    t = run.clock.now()
    run.call.say(at=t + 0.2, seconds=1.0)  # "okay" over the answer
    await run.until(lambda: run.clock.now() > t + 4.0)
    assert "backchannel" in run.kinds(), run.dialog.events
    assert run.engines.ahead == []
    await run.finish()


# --- through the real parts: silero, whisper tiny.en, llama.cpp (the default LLM), Piper --

@pytest.fixture(scope="module")
def real_engines() -> Any:
    from models.engines import EngineConfig, Engines

    return Engines.load(EngineConfig(llm_pool=1))


@pytest.mark.parametrize("ahead", [True, False])
async def test_a_real_callers_words_are_in_the_llm_cache_before_they_pause(real_engines, monkeypatch, ahead: bool) -> None:  # type: ignore[no-untyped-def]
    """A 3 s question over the AudioSocket wire: whisper transcribes it while it is spoken, and
    the reply at the pause evaluates fewer tokens than the caller's words (the rest were
    evaluated ahead). Off, the reply evaluates all of them (the test can fail)."""
    from audiosocket.server import AudioSocketServer, CallSession
    from devtools.caller import CallerEmulator
    from devtools.utterances import synthesize_set
    from phoneagent.dialog.config import AgentConfig
    from phoneagent.dialog.session import CallDialog

    assert real_engines.llm_on_cpu
    llm, stats = real_engines.llm, []
    real_stream = llm.stream

    def spy(messages: Any, **kwargs: Any) -> Any:  # the real stream; only its prompt and figures are kept
        done = yield from real_stream(messages, **kwargs)
        stats.append((list(messages), done))
        return done

    monkeypatch.setattr(llm, "stream", spy)
    question = synthesize_set()[4]  # "Can I book an appointment for Tuesday at ten thirty?"
    dialogs: list[CallDialog] = []

    async def handler(session: CallSession) -> None:
        dialogs.append(d := CallDialog(real_engines.sharing(), AgentConfig(greeting="Hello.", max_reply_tokens=8,
                                                                           words_ahead_s=0.8 if ahead else 0.0)))
        await d.run(session)

    srv = AudioSocketServer(handler, "127.0.0.1", 0)
    await srv.start()
    try:
        async with CallerEmulator("127.0.0.1", srv.port) as caller:
            assert await caller.wait_agent_done(quiet_s=0.5, timeout=30), "no greeting heard"
            _, t_end = await caller.say(question.pcm16k)
            assert await caller.wait_agent_done(since=t_end, quiet_s=0.8, timeout=30), "no answer"
    finally:
        await srv.close()
    d = dialogs[0]
    said = next(t["text"] for t in d.turns if t["role"] == "caller")
    ahead_words = [dt["words"] for _, k, dt in d.events if k == "words_ahead"]
    messages, reply = stats[-1]
    n_said = len(llm._vocab_reader().tokenize(said.encode(), add_bos=False, special=False))
    evaluated = reply.prompt_tokens - reply.cached_tokens
    # Where the caller's words start in the reply's prompt: the conversation before them and the
    # user turn's opening. The reply's cached prefix reaching past it holds words evaluated ahead.
    fmt = llm.prompt_format
    words_start = len(llm._tokenize(llm._vocab_reader(), [*fmt.parts(messages[:-1], add_generation_prompt=False), *fmt.user_opening()]))
    cached_words = reply.cached_tokens - words_start
    story = (evaluated, n_said, cached_words, ahead_words, said)
    if ahead:
        # Not "fewer evaluated than said", nor a fixed count: only the words before the first
        # place the final transcript differs from the partial one are kept, and tiny.en's
        # partials of this clip differ from its final transcript anywhere after "Can I"
        # ("appointment" -> "appointments" left 4 tokens cached, "Can I will cannot" -> "Can I
        # will count" 2; turned off: none).
        assert len(ahead_words) >= 2 and "appointment" in ahead_words[-1].lower(), story
        assert cached_words >= 1, story
    else:
        assert ahead_words == [] and cached_words <= 0 and evaluated > n_said, story
