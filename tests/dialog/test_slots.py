"""Slots: from the recogniser's words to the value, the read-back, and a correction merged in."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoneagent.dialog.slots import Slot, digit_groups, keypad_digits, letter_names, repair, slots_of, spell, yes_or_no

PHONE = Slot("phone", "phone", 7, 15)
EMAIL = Slot("email", "email")


@pytest.mark.parametrize("heard, value", [
    ("Five five five, two three four, nine eight seven six.", "5552349876"),
    ("It's 555-234-9876.", "5552349876"),
    ("zero seven seven zero, nine double zero, one two three", "0770900123"),
    ("It's oh one six three, double four, five nine two.", "016344592"),  # "oh" before digits is a zero
    ("Oh, it's five five five two three four nine eight seven six", "5552349876"),  # "Oh," alone is not
    ("My number is 5, 5523498106", "55523498106"),  # what the recogniser wrote, every digit (too long: see valid)
    ("(keypad) 5552349876", "5552349876"),
    # Digit words as whisper writes them after the phone band ("five" without its f is "time"):
    ("4 1 time, 5 5 0 1 2 3", "415550123"),
    ("4 1 time. Time, time, time, 0 1 2 3", "4155550123"),
    ("Call me back to 555 234 9876.", "5552349876"),  # "to" before a number stays a word
    ("5 to 6 for 7", "52647"),  # ... and after a digit is one
    ("My account is forty two, twenty one.", "4221"),
    ("triple five, two three four", "555234"),
    ("I don't know it.", ""),
])
def test_a_digits_slot_keeps_every_spoken_digit_in_order(heard: str, value: str) -> None:
    assert PHONE.capture(heard) == value


def test_validity_is_the_declared_length() -> None:
    order = Slot.of("order_id", {"type": "string", "pattern": "^[0-9]{4}$", "x-slot": "digits"})
    assert order == Slot("order_id", "digits", 4, 4)
    assert order.valid("4572") and not order.valid("45721") and not order.valid("457a")
    assert Slot.of("acct", {"x-slot": "digits", "pattern": r"^\d{6,10}$"}) == Slot("acct", "digits", 6, 10)
    assert Slot.of("p", {"x-slot": "phone", "maxLength": 11}) == Slot("p", "phone", 7, 11)
    assert not PHONE.valid("55523498106234567") and PHONE.valid("5552349876")
    assert Slot.of("x", {"type": "string"}) is None
    with pytest.raises(ValueError, match="x-slot must be one of digits, phone, email, date, amount, got 'time'"):
        Slot.of("t", {"x-slot": "time"})
    with pytest.raises(ValueError, match="not a length"):
        Slot.of("d", {"x-slot": "digits", "minLength": 5, "maxLength": 2})
    assert list(slots_of({"properties": {"a": {"type": "string"}, "phone": {"x-slot": "phone"}, "e": {"x-slot": "email"}}})) == ["phone", "e"]


def test_digits_are_read_back_one_by_one_in_groups() -> None:
    assert PHONE.read_back("5552349876") == "5 5 5, 2 3 4, 9 8 7 6"
    assert Slot("o", "digits", 4, 4).read_back("4572") == "4 5 7 2"
    assert [digit_groups("1" * n) for n in (4, 5, 7, 8, 11)] == [["1111"], ["111", "11"], ["111", "1111"], ["111", "111", "11"],
                                                              ["111", "111", "111", "11"]]


@given(st.text(alphabet="0123456789", max_size=30))
def test_groups_always_join_back_to_the_digits(digits: str) -> None:
    groups = digit_groups(digits)
    assert "".join(groups) == digits
    assert all(2 <= len(g) <= 4 for g in groups) or len(digits) < 2


@pytest.mark.parametrize("heard, value, spoken", [
    ("My email is john dot smith at example dot com.", "john.smith@example.com", "j o h n dot s m i t h at e x a m p l e dot com"),
    ("j o h n dot s m i t h at gmail dot com", "john.smith@gmail.com", "j o h n dot s m i t h at g m a i l dot com"),
    ("It's anna_lee@mail.org.", "anna_lee@mail.org", "a n n a underscore l e e at m a i l dot org"),
    ("I'll be at the store at five.", "", ""),
    # letters whisper wrote as words, inside a spelling: "and" for n, "are" for r
    ("It's J-O-H and dot S-M-I-T-H at gmail dot com.", "john.smith@gmail.com", "j o h n dot s m i t h at g m a i l dot com"),
    ("b d d are at hotmail dot com", "bddr@hotmail.com", "b d d r at h o t m a i l dot com"),
])
def test_an_email_slot_is_captured_and_spelled(heard: str, value: str, spoken: str) -> None:
    assert EMAIL.capture(heard) == value
    if value:
        assert EMAIL.valid(value) and EMAIL.read_back(value) == spoken
    assert EMAIL.capture("(keypad) 123") == ""  # no email from the keypad
    assert spell("a.b-c") == "a dot b dash c"


@pytest.mark.parametrize("text, answer", [
    ("Yes.", True), ("Yeah, that's right.", True), ("That's correct.", True), ("Okay.", True), ("Um, yes.", True),
    ("No.", False), ("Nope.", False), ("No, it's nine eight seven seven at the end.", False), ("Actually it's 235.", False),
    ("Oh no, that's wrong.", False), ("That's not right.", False),
    ("What time do you close?", None), ("Noted, thanks, how long will it take?", None),
])
def test_yes_or_no_to_a_read_back(text: str, answer: bool | None) -> None:
    assert yes_or_no(text) is answer


def test_a_correction_replaces_the_group_it_is_closest_to() -> None:
    value = "5552349876"
    assert repair(value, "9877", PHONE) == "5552349877"  # the only group of four
    assert repair(value, "235", PHONE) == "5552359876"  # 234 differs in one place, 555 in three
    assert repair(value, "5552349877", PHONE) == "5552349877"  # the whole number again
    assert repair(value, "555", PHONE) is None  # identical to a group: nothing to correct, ask again
    assert repair("1112229876", "113", PHONE) == "1132229876"  # one place from 111, three from 222
    assert repair("1212229876", "112", PHONE) is None  # 121 and 222 both differ in one place: ambiguous
    assert repair(value, "12", PHONE) is None and repair(value, "", PHONE) is None


@pytest.mark.parametrize("text, kept", [
    ("J-O-H and dot S-M-I-T-H", "J-O-H n dot S-M-I-T-H"),
    ("p e t e are", "p e t e r"),
    ("d be are at", "d b r at"),  # a name next to a name that is a letter
    ("be be are at", "be be are at"),  # names alone are words
    ("and then I'll leave you at outlook dot com", "and then I'll leave you at outlook dot com"),
    ("you and me", "you and me"),
])
def test_letter_names_count_only_among_spelled_letters(text: str, kept: str) -> None:
    assert letter_names(text) == kept


def test_keypad_turns_are_recognised() -> None:
    assert keypad_digits("(keypad) 4711") == "4711" and keypad_digits("(keypad) 12#") == "12"
    assert keypad_digits("four seven one one") is None


def test_the_value_is_the_first_text_of_the_slots_length() -> None:
    from phoneagent.dialog.capture import heard_value

    ten = Slot("phone", "phone", 10, 10)
    assert heard_value(ten, "5 5, 2 3 4, 9 8 7 6.", ("5 5 2 3 4 9 8 7 6", "5 5 5, 2 3 4, 9 8 7 6.")) == "5552349876"
    assert heard_value(ten, "5 5, 2 3 4, 9 8 7 6.", ("5 5 2 3 4",)) == "552349876"  # none fits: the best text's
    assert heard_value(Slot("o", "digits", 4, 4), "4 9 7 2. 4 9 7 2.", ()) == "4972"  # written twice, said once
    assert heard_value(ten, "2 3 4, 9 8 7 6", (), before="555") == "5552349876"  # the rest of a number said in pieces
    assert heard_value(EMAIL, "it's anna at mail dot org", ()) == "anna@mail.org"


def test_one_answer_recognised_per_prompt_is_merged_surest_first() -> None:
    from models.base import Transcript
    from phoneagent.dialog.capture import heard_value, merged

    def tr(text: str, confidence: float, *alternatives: str) -> Transcript:
        return Transcript(text, text, confidence, 0.0, "en", 2.0, 0.1, alternatives)

    words, spelled = tr("dot smith", 0.2, "uh"), tr("J-O-H-N dot S-M-I-T-H at gmail dot com.", 0.8, "J-O-H-N at gmail.com")
    one = merged([words, spelled])
    assert (one.text, one.alternatives) == (spelled.text, ("J-O-H-N at gmail.com", "dot smith", "uh"))
    assert one.decode_s == pytest.approx(0.2)
    assert heard_value(EMAIL, one.text, one.alternatives) == "john.smith@gmail.com"
    # the surer text holds no email: the next one that does is taken
    assert heard_value(EMAIL, *(lambda m: (m.text, m.alternatives))(merged([tr("jk dot com", 0.9), words, spelled]))) \
        == "john.smith@gmail.com"


@pytest.mark.parametrize(("slot", "value", "text", "outcome", "now"), [
    (Slot("phone", "phone", 10, 10), "5552349876", "Yes, that's right.", "confirmed", "5552349876"),
    (Slot("phone", "phone", 10, 10), "5552349876", "(keypad) 5552349877", "typed", "5552349877"),
    (Slot("phone", "phone", 10, 10), "5552349876", "No, 9 8 7 7 at the end.", "repaired", "5552349877"),
    (Slot("phone", "phone", 10, 10), "5552349876", "No.", "again", ""),
    (Slot("day", "date", today=date(2026, 12, 2)), "2027-03-07", "No, the sixth.", "part", "2027-03-06"),
    (Slot("day", "date", today=date(2026, 12, 2)), "2027-03-07", "No, the fifth of April.", "repaired", "2027-04-05"),
    (Slot("sum", "amount", currency="USD"), "42.15", "No, forty two dollars and fifty cents.", "repaired", "42.50"),
    (Slot("sum", "amount", currency="USD"), "19.00", "No, $19 and $9.10", "again", ""),  # the refused value again
])
def test_the_answer_to_a_read_back(slot: Slot, value: str, text: str, outcome: str, now: str) -> None:
    from phoneagent.dialog.capture import answer_to_read_back

    assert answer_to_read_back(slot, value, text, ()) == (outcome, now)
