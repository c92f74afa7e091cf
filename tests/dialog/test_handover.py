"""Handover: detecting a request for a person, reading digits aloud, the summary the person hears."""

from __future__ import annotations

import re

import pytest

from phoneagent.dialog.handover import handover_summary, spoken_digits, wants_human

# --- wants_human -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Could you transfer me to a real person, please?",
    "can I speak to a human",
    "I want to talk to someone",
    "put me through to an agent",
    "live agent",
    "LIVE AGENT!",
    "Can I speak with somebody from billing please",
    "connect me with a manager",
    "get me a person",
    "I'd like to talk to a representative.",
    "transfer me to an operator",
    "is there a human being I can talk to",
    "I want to speak to an actual person",
    "Can I talk to your staff?",
])
def test_wants_human_positives(text: str) -> None:
    assert wants_human(text)


@pytest.mark.parametrize("text", [
    "what time do you close",
    "my operator account",
    "operator please",  # on purpose: "operator" alone hits "operator of the account" too often
    "I spoke to someone yesterday",  # past tense: not a request
    "I talked to someone yesterday",
    "I want to talk about my personal data",  # "person" must be a whole word
    "the agent on the phone last week was helpful",
    "",
    "agent",
])
def test_wants_human_negatives(text: str) -> None:
    assert not wants_human(text)


def test_wants_human_noun_must_be_near_the_verb() -> None:
    assert wants_human("can I speak to a human")
    assert not wants_human("can I speak quickly about my bill and the invoice you sent to someone")


@pytest.mark.parametrize("text", ["can I speak to one of your agents", "I want to talk to humans",
                                  "connect me with one of your representatives"])
def test_wants_human_plural_nouns(text: str) -> None:
    assert wants_human(text)


@pytest.mark.parametrize("text", ["I don't want to speak to a human", "no need to talk to someone, just tell me"])
def test_wants_human_negated_request(text: str) -> None:
    assert not wants_human(text)


# --- spoken_digits ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, spoken", [
    ("4711#", "4 7 1 1 hash"),
    ("*0", "star 0"),
    ("+49 89 1234", "plus 4 9 8 9 1 2 3 4"),
    ("(030) 123-45", "0 3 0 1 2 3 4 5"),
    ("12AB", "1 2 A B"),
    ("", ""),
    ("-- ", ""),
])
def test_spoken_digits(text: str, spoken: str) -> None:
    assert spoken_digits(text) == spoken


# --- handover_summary ------------------------------------------------------------------------


def test_full_summary() -> None:
    transcript = [
        ("agent", "Hello, this is the phone agent. How can I help?"),
        ("caller", "My internet has been down since Monday"),
        ("agent", "I am sorry to hear that. Can you tell me your customer number?"),
        ("caller", "(keypad) 4711"),
        ("agent", "Thank you. Let me check."),
        ("caller", "Can I speak to a human"),
    ]
    summary = handover_summary(transcript, caller_number="+4930123", keypad=["4711"],
                               reason="the caller asked for a person")
    assert summary.startswith("The caller's number is plus 4 9 3 0 1 2 3. ")
    assert "They are being transferred because the caller asked for a person." in summary
    assert "My internet has been down since Monday" in summary
    assert "Can I speak to a human" in summary
    assert "(keypad)" not in summary  # typed entries are read from `keypad`, not quoted as speech
    assert "They typed 4 7 1 1." in summary
    assert summary.endswith("I last told them: Thank you. Let me check.")


def test_number_without_digits_is_left_out() -> None:
    for number in ("", "anonymous", "Restricted"):
        assert "number" not in handover_summary([("caller", "hello")], caller_number=number)


def test_no_reason_no_sentence() -> None:
    assert "transferred" not in handover_summary([("caller", "hello")])


def test_no_speech() -> None:
    assert handover_summary([]) == "The caller has not said anything yet."
    assert handover_summary([("agent", "Hello, how can I help?"), ("caller", "  "),
                             ("caller", "(keypad) 12")]) == "The caller has not said anything yet."


def test_greeting_only_agent_turn_is_not_quoted() -> None:
    summary = handover_summary([("agent", "Hello, how can I help?"), ("caller", "operator")])
    assert "Hello" not in summary and "I last told them" not in summary
    assert summary == "The caller said: operator."


def test_last_agent_turn_after_greeting_is_quoted() -> None:
    summary = handover_summary([("agent", "Hello."), ("caller", "hi"), ("agent", "Your balance is zero"),
                                ("agent", "  ")])
    assert summary.endswith("I last told them: Your balance is zero.")


def test_only_the_last_caller_turns_are_quoted() -> None:
    transcript = [("caller", f"turn {i}") for i in range(1, 6)]
    summary = handover_summary(transcript, max_caller_turns=2)
    assert "turn 1" not in summary and "turn 3" not in summary
    assert "turn 4" in summary and "turn 5" in summary
    assert summary.index("turn 4") < summary.index("turn 5")


def test_long_turns_are_clipped() -> None:
    summary = handover_summary([("caller", " ".join(f"w{i}" for i in range(50)))], words_per_turn=5)
    assert "w0 w1 w2 w3 w4" in summary and "w5" not in summary


def test_other_roles_are_skipped() -> None:
    summary = handover_summary([("tool", "lookup: {\"balance\": 0}"), ("caller", "hello"), ("system", "secret")])
    assert summary == "The caller said: hello."


def test_several_keypad_entries() -> None:
    summary = handover_summary([("caller", "hi")], keypad=["4711", "*12#"])
    assert "They typed 4 7 1 1, then star 1 2 hash." in summary


def test_turn_ending_in_a_full_stop_gets_one_full_stop() -> None:
    summary = handover_summary([("caller", "I need help with my bill.")])
    assert summary == "The caller said: I need help with my bill."


_STRAY_DOTS = re.compile(r"(?<!\.)\.\.(?!\.)")  # exactly two dots: neither a full stop nor an ellipsis


@pytest.mark.parametrize("transcript, words", [
    ([("caller", "I need help with my bill."), ("caller", "It is too high")], 30),
    ([("caller", "hello"), ("caller", "anyone there")], 30),
    ([("caller", "one two three four five six")], 3),
])
def test_separators_and_clip_marks_survive(transcript: list[tuple[str, str]], words: int) -> None:
    summary = handover_summary(transcript, words_per_turn=words)
    assert not _STRAY_DOTS.search(summary), summary
