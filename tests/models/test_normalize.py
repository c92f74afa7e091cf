"""Telephony normalisation: each rewrite, what it must leave alone, and the WER built on it.

Tables of (input, expected). Negative cases are the point as much as positive ones: the dialog
layer acts on digits and emails, so rewriting ordinary English ("one of them", "at the store")
would be a bug it cannot see.
"""

from __future__ import annotations

import random

import pytest

from models.normalize import (
    normalize_emails,
    normalize_numbers,
    normalize_ordinals,
    normalize_times,
    normalize_transcript,
    wer,
    wer_words,
)

NUMBERS = [
    # digit readouts
    ("one two three four", "1234"),
    ("my number is five five five one two three four", "my number is 5551234"),
    ("my number is five five five, one two three four.", "my number is 5551234."),
    ("my number is 5 5 5, 1 2 3 4", "my number is 5551234"),
    ("It's 1, 2, 3, 4.", "It's 1234."),
    ("five five five, 1234", "5551234"),
    ("account four seven two nine one eight three five please", "account 47291835 please"),
    ("zero one two", "012"),
    # "oh", double, triple
    ("five oh two", "502"),
    ("ten oh five", "1005"),
    ("nineteen oh five", "1905"),
    ("double seven", "77"),
    ("double oh seven", "007"),
    ("triple five two", "5552"),
    ("four double 2 one", "4221"),
    # cardinals
    ("twenty five", "25"),
    ("twenty-five", "25"),
    ("three hundred and twelve", "312"),
    ("one hundred twenty three", "123"),
    ("a hundred dollars", "100 dollars"),
    ("two thousand and five", "2005"),
    ("two thousand twenty four", "2024"),
    ("three million two hundred thousand", "3200000"),
    ("nineteen hundred", "1900"),
    ("nineteen eighty four", "1984"),
    ("twenty twenty five", "2025"),
    ("twenty five twenty", "2520"),
    ("five twenty five", "5:25"),  # two words that read as a clock time are one
    ("I am twenty", "I am 20"),
    ("ten minutes", "10 minutes"),
    ("five fifty dollars", "550 dollars"),
    # clock times read as word pairs
    ("ten thirty", "10:30"),
    ("at twelve fifteen", "at 12:15"),
    ("three p m", "3:00 PM"),
    ("two oh five p.m. tomorrow", "2:05 PM tomorrow"),
    ("ten o'clock", "10:00"),
    # A digit word joined to a readout is part of it (it was "five0123").
    ("five, five, 0 1 2 3", "five, 50123"),
    ("4 1 five. five, five, five, 0 1 2 3", "415. five, five, 50123"),
]

NUMBERS_UNCHANGED = [
    "one of them",
    "the one on the left",
    "I have two",
    "Oh, five",
    "oh no",
    "hundreds of calls",
    "a thousand",  # "a" with nothing after: still a number word, but see the next line
    "call 555-1234",
    "in 2020, 3 of us went",
    "25, 30",
    "zero",
    "No, I don't think so.",
    "I'd like to won",
    "the first time",
    "it costs 10.30",
    "room five o",
    "five and six",
    "a few",
]


@pytest.mark.parametrize(("text", "expected"), NUMBERS)
def test_numbers(text: str, expected: str) -> None:
    assert normalize_numbers(text) == expected


@pytest.mark.parametrize("text", [t for t in NUMBERS_UNCHANGED if t != "a thousand"])
def test_numbers_leave_ordinary_words(text: str) -> None:
    assert normalize_numbers(text) == text


def test_a_thousand_is_a_number() -> None:
    assert normalize_numbers("a thousand") == "1000"


TIMES = [
    ("ten thirty", "10:30"),
    ("half past two", "2:30"),
    ("Half past 2", "2:30"),
    ("quarter past three", "3:15"),
    ("a quarter to three", "2:45"),
    ("quarter to one", "12:45"),
    ("quarter to twelve", "11:45"),
    ("ten past five", "5:10"),
    ("twenty five past six", "6:25"),
    ("twenty minutes past 4", "4:20"),
    ("three p m", "3:00 PM"),
    ("3 pm", "3:00 PM"),
    ("3pm", "3:00 PM"),
    ("3 P.M. tomorrow", "3:00 PM tomorrow"),
    ("at 3 p.m.", "at 3:00 PM."),
    ("10:30am", "10:30 AM"),
    ("ten thirty a m", "10:30 AM"),
    ("eleven a.m. works", "11:00 AM works"),
    ("four o'clock", "4:00"),
    ("4 o'clock", "4:00"),
    ("noon", "12:00 PM"),
    ("at twelve noon", "at 12:00 PM"),
    ("Midnight", "12:00 AM"),
    ("Tuesday at 10.30?", "Tuesday at 10:30?"),
    ("at 10.30pm", "at 10:30 PM"),
]

TIMES_UNCHANGED = [
    "half of it",
    "half to three",
    "from five to nine",
    "this afternoon",
    "one two three four",
    "five oh two",
    "I am twenty",
    "13 pm",
    "it costs 10.30",
    "at 2.505",
    "the past three days",
]


@pytest.mark.parametrize(("text", "expected"), TIMES)
def test_times(text: str, expected: str) -> None:
    assert normalize_times(text) == expected


@pytest.mark.parametrize("text", TIMES_UNCHANGED)
def test_times_leave_other_numbers(text: str) -> None:
    assert normalize_times(text) == text


ORDINALS = [
    ("the twenty first", "the 21st"),
    ("the twenty-second of May", "the 22nd of May"),
    ("thirty third", "33rd"),
    ("the fifteenth", "the 15th"),
    ("the twentieth", "the 20th"),
    ("the eleventh of March", "the 11th of March"),
    ("March third", "March 3rd"),
    ("June the first", "June the 1st"),
    ("first of April", "1st of April"),
    ("the twelfth December", "the 12th December"),
]

ORDINALS_UNCHANGED = ["the first time", "a tenth of it", "the second option", "you may first check", "third party", "first class"]


@pytest.mark.parametrize(("text", "expected"), ORDINALS)
def test_ordinals(text: str, expected: str) -> None:
    assert normalize_ordinals(text) == expected


@pytest.mark.parametrize("text", ORDINALS_UNCHANGED)
def test_ordinals_leave_ordinary_words(text: str) -> None:
    assert normalize_ordinals(text) == text


EMAILS = [
    ("john dot smith at example dot com", "john.smith@example.com"),
    ("my email is john dot smith at example dot com.", "my email is john.smith@example.com."),
    ("j o h n at gmail dot com", "john@gmail.com"),
    ("it's J-O-H-N at gmail.com", "it's john@gmail.com"),
    ("John.Smith at Example.com", "john.smith@example.com"),
    ("john underscore smith at my dash site dot org", "john_smith@my-site.org"),
    ("mary hyphen jane at example dot co dot uk", "mary-jane@example.co.uk"),
    ("john_smith at example dot co dot uk", "john_smith@example.co.uk"),
    ("john 23 at gmail dot com", "john23@gmail.com"),
    ("john 2 3 at gmail dot com", "john23@gmail.com"),  # digits said one by one
    ("j o h n 2 3 at gmail dot com", "john23@gmail.com"),
    ("G-R-C-I-A 7-0 at yahoo dot com", "grcia70@yahoo.com"),  # whisper's spelling dashes between digits too
    ("it is 5 at gmail dot com", "it is 5@gmail.com"),  # "is" is no part of the address
    ("email me at example dot com", "email me@example.com"),  # a cue word makes "me" a local part
    ("sales at a b c dot net please", "sales@abc.net please"),
    ("send it to sales at example dot com", "send it to sales@example.com"),
    ("yes, sales at example dot com", "yes, sales@example.com"),
]

EMAILS_UNCHANGED = [
    "meet me at the store",
    "I'll be at home dot com",
    "see you at 10:30",
    "look at this dot",
    "john at example dot",
    "john at example dot banana",
    "she works at example dot com",
    "we met bob at example dot com",
    "I said no. John at",
    "at gmail dot com",
]


@pytest.mark.parametrize(("text", "expected"), EMAILS)
def test_emails(text: str, expected: str) -> None:
    assert normalize_emails(text) == expected


@pytest.mark.parametrize("text", EMAILS_UNCHANGED)
def test_emails_need_a_whole_address(text: str) -> None:
    assert normalize_emails(text) == text


TRANSCRIPTS = [
    ("My account number is four seven two nine one eight three five.", "My account number is 47291835."),
    ("Can I book an appointment for Tuesday at ten thirty?", "Can I book an appointment for Tuesday at 10:30?"),
    ("My phone number is five five five, one two three four.", "My phone number is 5551234."),
    ("My email is john dot smith at example dot com.", "My email is john.smith@example.com."),
    ("I'd like to pay two hundred and fifty dollars.", "I'd like to pay 250 dollars."),
    ("The delivery was due on the twenty first of March.", "The delivery was due on the 21st of March."),
    ("It's number three oh two.", "It's number 302."),
    ("Call me at half past two or at three p m.", "Call me at 2:30 or at 3:00 PM."),
    ("quarter to three", "2:45"),
    ("lunch at noon", "lunch at 12:00 PM"),
    ("Yes, that's correct.", "Yes, that's correct."),
    ("One of them is at the store.", "One of them is at the store."),
    ("", ""),
    ("  leading and trailing  ", "  leading and trailing  "),
]


@pytest.mark.parametrize(("text", "expected"), TRANSCRIPTS)
def test_normalize_transcript(text: str, expected: str) -> None:
    assert normalize_transcript(text) == expected


@pytest.mark.parametrize(("text", "_"), TRANSCRIPTS + NUMBERS + TIMES + EMAILS)
def test_normalize_transcript_is_idempotent(text: str, _: str) -> None:
    once = normalize_transcript(text)
    assert normalize_transcript(once) == once


WER_WORDS = [
    ("Hello, World!", ["hello", "world"]),
    ("I don't know", ["i", "dont", "know"]),
    ("five five five one two three four", ["5551234"]),
    ("555-1234", ["5551234"]),
    ("one", ["1"]),
    ("$250", ["250", "dollars"]),
    ("5,000 people", ["5000", "people"]),
    ("ten thirty", ["1030"]),
    ("10:30", ["1030"]),
    ("john dot smith at example dot com", ["johnsmithexamplecom"]),
    ("50%", ["50", "percent"]),
    ("", []),
]


@pytest.mark.parametrize(("text", "expected"), WER_WORDS)
def test_wer_words(text: str, expected: list[str]) -> None:
    assert wer_words(text) == expected


WER = [
    ("my number is five five five", "My number is 555.", 0.0),
    ("the twenty first of March", "the 21st of March", 0.0),
    ("at ten thirty", "at 10:30", 0.0),
    ("yes that's correct", "yes not correct", 1 / 3),
    ("yes that's correct", "yes that's", 1 / 3),
    ("yes", "yes yes yes", 2.0),
    ("a b c d", "", 1.0),
    ("", "", 0.0),
    ("", "noise", 1.0),
    ("one two three", "1 2 3", 0.0),
]


@pytest.mark.parametrize(("ref", "hyp", "expected"), WER)
def test_wer(ref: str, hyp: str, expected: float) -> None:
    assert wer(ref, hyp) == pytest.approx(expected)


EDGES = [
    ("quarter past noon", "quarter past 12:00 PM"),
    ("three o'clock p m", "3:00 PM"),
    ("quarter to 3pm", "quarter to 3:00 PM"),
    ("twenty first century", "21st century"),
    ("five double oh", "500"),
]


@pytest.mark.parametrize(("text", "expected"), EDGES)
def test_edge_cases(text: str, expected: str) -> None:
    assert normalize_transcript(text) == expected


def test_random_word_salad_never_raises_and_is_idempotent() -> None:
    """Whisper can emit anything; normalisation must neither crash nor keep rewriting."""
    vocab = "one two three oh o double triple a hundred thousand and at dot dash underscore com - , . : 5 55 10:30 p m am pm o'clock half quarter past to noon twenty first march the j is email 3pm 1,000 $ % é".split()
    rng = random.Random(7)
    for _ in range(3000):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 10)))
        once = normalize_transcript(text)
        assert normalize_transcript(once) == once, text
        assert 0.0 <= wer(text, once)
