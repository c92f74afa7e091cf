"""What the caller heard of a reply, and a history that fits the LLM's budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.base import Message
from phoneagent.dialog.context import CUT_MARK, Conversation, SpokenReply

# 17 characters in 1000 ms, 30 in 1500 ms, 13 in 800 ms: 3300 ms in all.
CLAUSES = [("Sure, I can help.", 1000.0), ("Your table for four is booked.", 1500.0), ("See you then!", 800.0)]
FULL = "Sure, I can help. Your table for four is booked. See you then!"


def reply(clauses: list[tuple[str, float]] = CLAUSES) -> SpokenReply:
    r = SpokenReply()
    for text, ms in clauses:
        r.add_clause(text, ms)
    return r


@pytest.mark.parametrize(("played_ms", "heard"), [
    (-5.0, ""),
    (0.0, ""),
    (200.0, ""),  # 3.4 of 17 characters: not even "Sure," is out
    (300.0, "Sure—"),  # 5.1 characters: "Sure," and the comma gives way to the mark
    (500.0, "Sure, I—"),  # 8.5 characters: "Sure," (5) and "I" (7), not "can" (11)
    (999.0, "Sure, I can—"),
    (1000.0, "Sure, I can help.—"),  # exactly at the boundary: the rest was still cut
    (1750.0, "Sure, I can help. Your table for—"),  # 15 of 30: "for" ends at 14, "four" at 19
    (2500.0, "Sure, I can help. Your table for four is booked.—"),
    (3299.9, "Sure, I can help. Your table for four is booked. See you—"),
    (3300.0, FULL),
    (9999.0, FULL),
])
def test_heard_text(played_ms: float, heard: str) -> None:
    assert reply().heard_text(played_ms) == heard


def test_heard_text_of_an_empty_reply_is_empty() -> None:
    assert SpokenReply().heard_text(500.0) == ""
    assert SpokenReply().text == ""


def test_a_word_ending_exactly_at_the_played_share_is_heard() -> None:
    # "one two" is 7 characters over 700 ms: "one" ends at character 3, i.e. at 300 ms.
    r = reply([("one two", 700.0)])
    assert (r.heard_text(299.0), r.heard_text(300.0)) == ("", f"one{CUT_MARK}")


def test_a_clause_cut_before_its_audio_was_not_heard() -> None:
    """A barge-in in the gap while the next clause is still being synthesised: that clause has
    no audio, so it and what follows were not heard, though every audio millisecond played."""
    r = reply([("Sure, I can help.", 1000.0), ("Your table for four is booked.", 0.0), ("See you then!", 0.0)])
    assert r.heard_text(1000.0) == "Sure, I can help.—"
    assert r.unheard_text(1000.0) == "Your table for four is booked. See you then!"
    assert reply([("", 0.0), ("Sure.", 500.0), ("", 0.0)]).heard_text(500.0) == "Sure."  # empty clauses say nothing


def test_clause_audio_may_arrive_in_several_chunks() -> None:
    r = SpokenReply()
    r.add_clause("Sure,   I can\nhelp.", 400.0)
    r.add_audio(600.0)
    r.add_clause("Your table for four is booked.", 1500.0)
    r.add_clause("See you then!", 800.0)
    assert r.total_ms == 3300.0
    assert r.text == FULL
    assert [c.duration_ms for c in r.clauses] == [1000.0, 1500.0, 800.0]
    assert r.heard_text(1750.0) == "Sure, I can help. Your table for—"


@pytest.mark.parametrize(("played_ms", "rest"), [
    (0.0, FULL),
    (500.0, FULL),
    (1000.0, "Your table for four is booked. See you then!"),
    (1750.0, "Your table for four is booked. See you then!"),
    (3299.0, "See you then!"),
    (3300.0, ""),
])
def test_unheard_text_restarts_the_clause_in_progress(played_ms: float, rest: str) -> None:
    assert reply().unheard_text(played_ms) == rest


def test_bad_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="duration_ms"):
        SpokenReply().add_clause("Hi.", -1.0)
    with pytest.raises(ValueError, match="before any add_clause"):
        SpokenReply().add_audio(10.0)
    with pytest.raises(ValueError, match="duration_ms"):
        reply().add_audio(-1.0)


# --- Conversation ------------------------------------------------------------------------------


def test_reply_played_to_the_end_is_stored_whole() -> None:
    conv = Conversation()
    conv.add_user("Can I book a table?")
    assert conv.add_agent_heard(reply(), 3300.0, interrupted=False) == FULL
    assert conv.messages("Be brief.") == [
        Message("system", "Be brief."), Message("user", "Can I book a table?"), Message("assistant", FULL),
    ]


def test_uninterrupted_reply_ignores_rounding_in_played_ms() -> None:
    conv = Conversation()
    assert conv.add_agent_heard(reply(), 3280.0, interrupted=False) == FULL


def test_interrupted_reply_keeps_only_what_was_heard() -> None:
    conv = Conversation()
    conv.add_user("Can I book a table?")
    heard = conv.add_agent_heard(reply(), 1750.0, interrupted=True)
    assert heard == "Sure, I can help. Your table for—"
    conv.add_user("Actually for five.")
    assert conv.transcript() == [
        ("caller", "Can I book a table?"), ("agent", heard), ("caller", "Actually for five."),
    ]


def test_interrupted_before_any_audio_stores_nothing_and_the_caller_turns_merge() -> None:
    conv = Conversation()
    conv.add_user("I want a table")
    assert conv.add_agent_heard(reply(), 0.0, interrupted=True) == ""
    conv.add_user("for four people.")
    assert conv.transcript() == [("caller", "I want a table for four people.")]


def test_blank_caller_text_is_ignored_and_whitespace_collapses() -> None:
    conv = Conversation()
    conv.add_user("  \n ")
    conv.add_user(" Hello \n there ")
    assert conv.history == (Message("user", "Hello there"),)


def test_consecutive_agent_replies_merge() -> None:
    conv = Conversation()
    conv.add_agent_heard(reply([("Hello, how can I help?", 900.0)]), 900.0, interrupted=False)
    conv.add_agent_heard(reply([("Are you still there?", 800.0)]), 800.0, interrupted=False)
    assert conv.history == (Message("assistant", "Hello, how can I help? Are you still there?"),)


def test_tool_results_stay_separate_and_carry_their_name() -> None:
    conv = Conversation()
    conv.add_user("Is there a table?")
    conv.add_tool_result("lookup", '{"free": 2}')
    conv.add_tool_result("lookup", '{"free": 3}')
    conv.add_agent_heard(reply([("Yes, there is.", 700.0)]), 700.0, interrupted=False)
    assert conv.messages("S")[1:] == [
        Message("user", "Is there a table?"), Message("tool", '{"free": 2}', name="lookup"),
        Message("tool", '{"free": 3}', name="lookup"), Message("assistant", "Yes, there is."),
    ]
    assert conv.transcript()[1] == ("tool", 'lookup: {"free": 2}')


def chars(messages: Sequence[Message]) -> int:
    """A sizer in characters, so budgets in these tests can be counted by eye."""
    return sum(len(m.content) + len(m.name or "") for m in messages)


def _pad(tag: str, n: int = 20) -> str:
    return tag.ljust(n, "x")


def test_trim_drops_oldest_turns_in_steps_and_keeps_tool_results_with_their_turn() -> None:
    conv = Conversation(budget=100, size=chars, trim_to=0.6)  # over 100: cut back to 60 or less
    system = _pad("system", 10)

    def kept() -> list[str]:
        msgs = conv.messages(system)
        assert msgs[0] == Message("system", system)
        return [m.content[:2] for m in msgs[1:]]

    conv.add_user(_pad("u1"))
    conv.add_agent_heard(reply([(_pad("a1"), 1.0)]), 1.0, interrupted=False)
    assert kept() == ["u1", "a1"]  # 50 characters
    conv.add_user(_pad("u2"))
    conv.add_tool_result("lookup", _pad("{}", 14))  # 6 + 14: tool name counts
    conv.add_agent_heard(reply([(_pad("a2"), 1.0)]), 1.0, interrupted=False)
    assert kept() == ["u2", "{}", "a2"]  # 110 -> 70: only whole turns go, the newest stays
    conv.add_user(_pad("u3"))
    assert kept() == ["u2", "{}", "a2", "u3"]  # 90: no trim, the cached prefix is unchanged
    conv.add_agent_heard(reply([(_pad("a3"), 1.0)]), 1.0, interrupted=False)
    assert kept() == ["u3", "a3"]  # 110 -> 50
    assert [r[1][:2] for r in conv.transcript()] == ["u1", "a1", "u2", "lo", "a2", "u3", "a3"]


def test_the_newest_turn_is_kept_even_over_budget() -> None:
    conv = Conversation(budget=50, size=chars)
    conv.add_user("hello")
    conv.add_user("x" * 200)
    assert conv.messages("S")[1:] == [Message("user", "hello " + "x" * 200)]
    conv.add_agent_heard(reply([("y" * 100, 1.0)]), 1.0, interrupted=False)
    conv.add_user("z" * 100)
    assert [m.content[0] for m in conv.messages("S")] == ["S", "z"]


def test_a_greeting_before_the_first_caller_turn_is_trimmed_like_a_turn() -> None:
    conv = Conversation(budget=60, size=chars, trim_to=1.0)
    conv.add_agent_heard(reply([(_pad("hi", 30), 1.0)]), 1.0, interrupted=False)
    conv.add_user(_pad("u1", 30))
    assert [m.role for m in conv.messages("")] == ["system", "assistant", "user"]
    assert [m.role for m in conv.messages("S")] == ["system", "user"]  # 61 > 60


@pytest.mark.parametrize("kwargs", [{"budget": 0}, {"trim_to": 0.0}, {"trim_to": 1.5}])
def test_bad_budget_is_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="budget"):
        Conversation(**kwargs)
    with pytest.raises(ValueError, match="cannot fit"):
        Conversation.for_llm(64, 64, chars)


def test_the_pending_caller_turn_counts_against_the_budget() -> None:
    conv = Conversation(budget=100, size=chars, trim_to=0.7)
    conv.add_user(_pad("u1", 30))
    conv.add_agent_heard(reply([(_pad("a1", 30), 1.0)]), 1.0, interrupted=False)
    assert [m.content[:2] for m in conv.messages("S", pending_user=_pad("u2", 30))] == ["S", "u1", "a1", "u2"]  # 91
    conv.add_user(_pad("u2", 30))
    conv.add_agent_heard(reply([(_pad("a2", 30), 1.0)]), 1.0, interrupted=False)
    # history alone is 121 > 100, and the pending turn must fit too: u1/a1 go
    assert [m.content[:2] for m in conv.messages("S", pending_user="u3")] == ["S", "u2", "a2", "u3"]


def test_a_pending_turn_joins_an_unanswered_caller_turn() -> None:
    conv = Conversation(budget=1000, size=chars)
    conv.add_user("My account is")
    assert conv.messages("S", pending_user="  four two ") == [Message("system", "S"), Message("user", "My account is four two")]
    assert conv.history == (Message("user", "My account is"),)  # nothing committed
    assert conv.messages("S", pending_user="") == [Message("system", "S"), Message("user", "My account is")]


ops = st.lists(
    st.tuples(st.sampled_from(["user", "agent", "cut", "tool", "look"]), st.integers(0, 60)), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(steps=ops, max_chars=st.integers(20, 300), trim_to=st.sampled_from([0.5, 0.75, 1.0]))
def test_trim_properties(steps: list[tuple[str, int]], max_chars: int, trim_to: float) -> None:
    conv = Conversation(budget=max_chars, size=chars, trim_to=trim_to)
    system = "You are a phone agent."
    first_kept = 0
    for op, n in steps:
        text = ("w " * n).strip()
        if op == "user":
            conv.add_user(text)
        elif op == "agent":
            conv.add_agent_heard(reply([(text, 10.0 * n)]), 10.0 * n, interrupted=False)
        elif op == "cut":
            conv.add_agent_heard(reply([(text, 10.0 * n)]), 5.0 * n, interrupted=True)
        elif op == "tool":
            conv.add_tool_result("lookup", f'{{"n": {n}}}')
        else:
            history = conv.history
            msgs = conv.messages(system)
            assert msgs[0] == Message("system", system)
            kept = msgs[1:]
            start = len(history) - len(kept)
            assert tuple(kept) == history[start:] and start >= first_kept  # a suffix; only moves on
            first_kept = start
            if start:
                assert kept[0].role == "user"  # whole turns: tool results never lose their turn
            turns = sum(m.role == "user" for m in kept[1:])
            size = len(system) + sum(len(m.content) + len(m.name or "") for m in kept)
            assert size <= max_chars or turns == 0
    roles = [m.role for m in conv.history]
    assert all(a != b or a == "tool" for a, b in zip(roles, roles[1:], strict=False))
