"""Dates and amounts from the recogniser's words (after models.normalize), and back into words."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.normalize import normalize_transcript
from phoneagent.dialog.slots import Slot
from phoneagent.dialog.spoken_values import say_amount, say_date, spoken_amount, spoken_date

TODAY = date(2026, 12, 2)  # a Wednesday


@pytest.mark.parametrize("heard, value", [
    ("the fifth of March twenty twenty seven", "2027-03-05"),
    ("March 5th, 2027.", "2027-03-05"),
    ("On March fifth.", "2027-03-05"),  # no year: the next one ahead
    ("December the 2nd", "2026-12-02"),  # today is still ahead
    ("December 1st", "2027-12-01"),  # yesterday's date is next year's
    ("the first of may", "2027-05-01"),  # ordinal words the normaliser leaves alone
    ("the twenty second of february", "2027-02-22"),
    ("Thirtieth of June.", "2027-06-30"),
    ("Sept. 9th 2030", "2030-09-09"),
    ("My birthday is July 4th, 1985.", "1985-07-04"),
    ("tomorrow", "2026-12-03"),
    ("The day after tomorrow, please.", "2026-12-04"),
    ("today", "2026-12-02"),
    ("Next Tuesday.", "2026-12-08"),
    ("on Wednesday", "2026-12-09"),  # today is Wednesday: the next one
    ("2027-01-15", "2027-01-15"),
    ("The 5th and March.", "2027-03-05"),  # "of" as the phone band leaves it
    ("The fifth on March", "2027-03-05"),
    ("My name is on Thursday, July 4th, 3085.", ""),  # a misheard year is no date
    ("the 31st of April", ""),  # no such day
    ("5/3/2027", ""),  # month first or day first cannot be told
    ("the 3rd", ""),  # no month
    ("I don't know.", ""),
])
def test_a_spoken_date(heard: str, value: str) -> None:
    assert spoken_date(normalize_transcript(heard), TODAY) == value


def test_a_date_whisper_writes_with_a_plain_day_number_is_captured() -> None:
    """The normaliser joins "July 4 1985" into a digit string; the date slot reads the text as written too."""
    assert spoken_date(normalize_transcript("July 4 1985"), TODAY) == ""
    assert Slot("day", "date", today=TODAY).capture("No, my date of birth is July 4 1985.") == "1985-07-04"


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31)))
def test_a_date_read_back_is_heard_as_the_same_date(d: date) -> None:
    """What the agent says back ("Friday, March 5th, 2027") is captured as that date again."""
    assert spoken_date(normalize_transcript(say_date(d.isoformat())), TODAY) == d.isoformat()


def test_a_date_is_read_back_with_its_weekday() -> None:
    assert say_date("2027-03-05") == "Friday, March 5th, 2027"
    assert say_date("2026-12-22") == "Tuesday, December 22nd, 2026"


@pytest.mark.parametrize("heard, value", [
    ("forty two dollars and fifty cents", "42.50"),
    ("$42.50", "42.50"),
    ("$42.5", "42.50"),
    ("forty two dollars and five cents", "42.05"),
    ("forty two dollars fifty", "42.50"),
    ("one dollar and one cent", "1.01"),
    ("one pound and one penny", "1.01"),
    ("one hundred and twenty dollars", "120.00"),
    ("1,250 dollars", "1250.00"),
    ("£300", "300.00"),
    ("three hundred euros", "300.00"),
    ("twelve fifty", "12.50"),
    ("$12 and $5.", "12.05"),  # "twelve dollars and five cents" as whisper often writes it
    ("$12.00 and $5.00.", "12.05"),
    ("$12 and $5.50.", "12.00"),  # not that when the second part has cents of its own  # "12:50" in the transcript: in an amount slot, money
    ("fifty cents", "0.50"),
    ("It is 300.", "300.00"),
    ("Nothing, thanks.", ""),
])
def test_a_spoken_amount(heard: str, value: str) -> None:
    assert spoken_amount(normalize_transcript(heard)) == value


@pytest.mark.parametrize("value, currency, said", [
    ("42.50", "USD", "42 dollars and 50 cents"),
    ("1.01", "USD", "1 dollar and 1 cent"),
    ("1.00", "EUR", "1 euro"),
    ("0.50", "GBP", "50 pence"),
    ("42.50", "GBP", "42 pounds and 50 pence"),
    ("0.00", "USD", "0 dollars"),
    ("42.50", "", "42 point 5 0"),
    ("300.00", "", "300"),
])
def test_an_amount_is_read_back_in_its_currency(value: str, currency: str, said: str) -> None:
    assert say_amount(value, currency) == said


@given(st.integers(0, 99_999), st.integers(0, 99), st.sampled_from(["USD", "EUR", "GBP"]))
def test_an_amount_read_back_is_heard_as_the_same_amount(units: int, cents: int, currency: str) -> None:
    value = f"{units}.{cents:02d}"
    assert spoken_amount(normalize_transcript(say_amount(value, currency))) == value


def test_date_and_amount_slots_from_an_agent_file() -> None:
    date_slot = Slot.of("delivery_date", {"type": "string", "x-slot": "date"})
    amount = Slot.of("refund", {"type": "string", "x-slot": "amount", "x-currency": "usd"})
    assert date_slot is not None and amount is not None
    assert amount.currency == "USD" and not amount.digits and not date_slot.digits
    with pytest.raises(ValueError, match="no today"):
        date_slot.capture("tomorrow")  # the dialog binds the call's day before it asks
    from dataclasses import replace
    bound = replace(date_slot, today=TODAY)
    assert bound.capture("Tomorrow, please.") == "2026-12-03" and bound.valid("2026-12-03") and not bound.valid("2026-12")
    assert amount.capture("forty two dollars and fifty cents") == "42.50" and amount.valid("42.50") and not amount.valid("42.5")
    assert amount.read_back("42.50") == "42 dollars and 50 cents" and bound.read_back("2026-12-03") == "Thursday, December 3rd, 2026"
    assert amount.capture("(keypad) 4250") == ""  # the keypad cannot say where the cents start
    for bad in ({"x-slot": "amount", "x-currency": "XYZ"}, {"x-slot": "date", "x-currency": "USD"}):
        with pytest.raises(ValueError, match="x-currency"):
            Slot.of("x", bad)


@pytest.mark.parametrize("said, value", [
    ("No, the sixth.", "2027-03-06"),
    ("no the twenty first", "2027-03-21"),
    ("No, April.", "2027-04-05"),
    ("It's the 31st.", "2027-03-31"),
    ("No.", ""),  # nothing to place: ask again
    ("No, the thirty first of April.", ""),  # no such day: ask again
    ("No, twenty twenty eight.", "2028-03-05"),  # the year alone
    ("No, 3085.", ""),  # a misheard year is no date
])
def test_one_part_of_a_read_back_date_is_corrected(said: str, value: str) -> None:
    slot = Slot("day", "date")
    assert slot.corrected("2027-03-05", said) == value
    assert Slot("n", "digits").corrected("1234", said) == ""  # numbers are repaired by group instead
