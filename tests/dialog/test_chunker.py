"""Clause chunking: exact clauses for known texts, and the same clauses for any tokenisation."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoneagent.dialog.chunker import ClauseChunker, _Cleaner, clean_text, reply_chunker


def chunk(text: str, chunker: ClauseChunker | None = None) -> list[str]:
    c = chunker or ClauseChunker()
    return c.push(text) + c.flush()


def chunk_tokens(tokens: list[str], chunker: ClauseChunker | None = None) -> list[str]:
    c = chunker or ClauseChunker()
    out: list[str] = []
    for tok in tokens:
        out += c.push(tok)
    return out + c.flush()


CASES: list[tuple[str, str, list[str]]] = [
    ("short first clause, longer later ones",
     "Sure, I can help. Your table for four is booked for Friday at seven. See you then!",
     ["Sure, I can help.", "Your table for four is booked for Friday at seven.", "See you then!"]),
    ("later clauses wait for min_words",
     "Okay, let me check. One moment, please. I found it, and it works.",
     ["Okay, let me check.", "One moment, please. I found it,", "and it works."]),
    ("numbers never split",
     "The total is 3,500 dollars, due at 10:30 today. That is 4.5 percent, or $12.99 a month.",
     ["The total is 3,500 dollars,", "due at 10:30 today. That is 4.5 percent,", "or $12.99 a month."]),
    ("abbreviations never split",
     "Dr. Smith and Mr. Jones will see you, e.g. at 9 a.m. tomorrow in the U.S. office. Bye now.",
     ["Dr. Smith and Mr. Jones will see you,", "e.g. at 9 a.m. tomorrow in the U.S. office.", "Bye now."]),
    ("an initial is an abbreviation",
     "Ask for J. R. Smith at the desk. He knows.",
     ["Ask for J. R. Smith at the desk.", "He knows."]),
    ("emails and URLs never split",
     "Write to john.doe@example.com, or visit https://example.com/a?b=1. We reply fast.",
     ["Write to john.doe@example.com,", "or visit https://example.com/a?b=1. We reply fast."]),
    ("a URL at a sentence end still ends it",
     "Please visit example.com. Then pick a time that suits you.",
     ["Please visit example.com.", "Then pick a time that suits you."]),
    ("closing quote after the mark",
     'He said "yes." Then he left the building quickly.',
     ['He said "yes."', "Then he left the building quickly."]),
    ("ellipsis is a sentence end",
     "Hmm, let me see... I think we have a table at eight.",
     ["Hmm, let me see...", "I think we have a table at eight."]),
    ("em dash splits without spaces",
     "Well, I think—actually, yes we can do it.",
     ["Well, I think—", "actually, yes we can do it."]),
    ("en dash in a range does not split",
     "We open 10–12 and 14–18 on weekdays – closed on Sundays though.",
     ["We open 10–12 and 14–18 on weekdays –", "closed on Sundays though."]),
    ("whitespace collapses",
     "Hello   there,\n\n  my  friend.",
     ["Hello there, my friend."]),
    ("markdown is stripped, line breaks are soft boundaries",
     "**Sure!** Here are your options:\n- Pizza\n- Pasta\n## Note\nUse `code` now.",
     ["Sure! Here are your options:", "Pizza Pasta Note Use code now."]),
    ("a list without punctuation splits at line breaks once long enough",
     "We have these:\n- red wine from the south\n- white wine from the north\n- water",
     ["We have these:", "red wine from the south white wine from the north", "water"]),
    ("a minus sign at line start is not a bullet",
     "It is\n-5 degrees outside today.",
     ["It is -5 degrees outside today."]),
    ("tool-call JSON never reaches TTS",
     'Let me check that. {"name": "lookup", "arguments": {"id": "7}\\"{"}} Done, it is booked.',
     ["Let me check that.", "Done, it is booked."]),
    ("code fences are dropped whole",
     'Here:\n```json\n{"a": 1}\n```\nAll set, see you soon.',
     ["Here: All set,", "see you soon."]),
    ("unclosed JSON swallows the rest",
     'Okay, one moment. {"name": "transfer", "arguments": {',
     ["Okay, one moment."]),
    ("a remainder with nothing to speak is dropped",
     'All good, see you. {"name": "hangup"} .',
     ["All good, see you."]),
    ("only a tool call", '{"name": "hangup", "arguments": {}}', []),
    ("empty", "", []),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_clauses(text: str, expected: list[str]) -> None:
    assert chunk(text) == expected
    assert chunk_tokens(list(text)) == expected


def test_max_words_forces_a_split_on_a_space() -> None:
    text = "one two three four five six seven eight nine ten eleven"
    assert chunk(text, ClauseChunker(2, 3, max_words=5)) == [
        "one two three four five", "six seven eight nine ten", "eleven",
    ]


def test_first_clause_is_emitted_as_soon_as_the_next_token_shows_it_ended() -> None:
    c = ClauseChunker()
    pushes = [c.push(t) for t in ["Sure", ",", " I", " can", " help", ".", " Your", " table", " is", " ready."]]
    assert pushes == [[], [], [], [], [], [], ["Sure, I can help."], [], [], []]
    assert c.flush() == ["Your table is ready."]


def test_flush_starts_the_next_reply_with_a_short_first_clause() -> None:
    c = ClauseChunker()
    assert chunk("Yes, it is. Goodbye now, my friend.", c) == ["Yes, it is.", "Goodbye now, my friend."]
    assert chunk("Yes, it is. Goodbye now, my friend.", c) == ["Yes, it is.", "Goodbye now, my friend."]


def test_reset_drops_the_buffer_and_open_markup() -> None:
    c = ClauseChunker()
    assert c.push('I was saying that {"name": ') == []
    c.reset()
    assert chunk("All right, here we go.", c) == ["All right, here we go."]


@pytest.mark.parametrize("kwargs", [
    {"min_words_first": 0}, {"min_words": 0}, {"max_words": 2}, {"min_words_first": 30},
])
def test_bad_word_limits_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="max_words"):
        ClauseChunker(**kwargs)


def test_clean_text() -> None:
    assert clean_text("# Title\n* **Bold** and `x`\n```py\nprint()\n```\n{\"a\": {}}end") == "Title Bold and x end"


# --- property: tokenisation never changes the clauses -----------------------------------------

_WORDS = ["we", "can", "book", "a", "table", "for", "you", "today", "Friday", "seven", "it's", "O'Neil"]
_MARKS = ["", "", "", ".", ",", "!", "?", ";", ":", "—", '."', ".)", "...", "?'"]
_PROTECTED = ["3,500", "10:30", "4.5", "$12.99", "Dr.", "Mr.", "e.g.", "a.m.", "U.S.",
              "john.doe@example.com", "https://example.com/a?b=1"]
_MARKUP = ["**bold**", "`code`", "*it*", '{"name": "x", "arguments": {"q": "}{"}}', "```\ncode\n```"]
_SEPARATORS = [" ", " ", " ", "  ", "\n", "\n- ", "\n# ", " \n\n"]

fragment = (
    st.tuples(st.sampled_from(_WORDS), st.sampled_from(_MARKS)).map("".join)
    | st.sampled_from(_PROTECTED)
    | st.sampled_from(_MARKUP)
)
texts = st.lists(st.tuples(fragment, st.sampled_from(_SEPARATORS)), max_size=60).map(
    lambda parts: "".join(f + s for f, s in parts)
)
limits = st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(8, 30))


def _raw_clean(text: str) -> str:
    """Cleaned text with its line breaks (they are soft clause boundaries)."""
    cleaner = _Cleaner()
    return "".join(cleaner.feed(ch) for ch in text) + cleaner.flush()


def _squash(text: str) -> str:
    return "".join(text.split())


@settings(max_examples=300, deadline=None)
@given(text=texts, lim=limits, data=st.data())
def test_any_tokenisation_gives_the_same_clauses(text: str, lim: tuple[int, int, int], data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(text) - 1, 1)), max_size=len(text))))
    tokens = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert "".join(tokens) == text
    whole = chunk(text, ClauseChunker(*lim))
    assert chunk_tokens(tokens, ClauseChunker(*lim)) == whole
    assert _squash(" ".join(whole)) == _squash(clean_text(text))
    first, later, most = lim
    for i, clause in enumerate(whole):
        assert clause == " ".join(clause.split())  # trimmed, single spaces
        words = [w for w in clause.split() if any(ch.isalnum() for ch in w)]
        assert len(words) <= most
        if i < len(whole) - 1:
            assert len(words) >= (first if i == 0 else later)
            abbr = next((a for a in ("Dr.", "Mr.", "e.g.", "a.m.", "U.S.") if clause.endswith(a)), None)
            if abbr:  # only a forced cut or a line break ends a clause after an abbreviation
                assert len(words) == most or re.search(re.escape(abbr) + r"[ \t]*\n", _raw_clean(text))
    for p in _PROTECTED:  # each one whole inside one clause
        assert sum(clause.count(p) for clause in whole) == text.count(p)
    spoken = " ".join(whole)
    for bad in ("*", "`", '"name"', "{", "}"):
        assert bad not in spoken


def test_first_clause_cap_cuts_a_long_unpunctuated_opening() -> None:
    c = ClauseChunker(min_words_first=2, max_words_first=4)
    out = []
    for tok in "Thanks so much for calling today I can help with that. Sure thing".split(" "):
        out += c.push(tok + " ")
    out += c.flush()
    assert out == ["Thanks so much for", "calling today I can help with that.", "Sure thing"]
    with pytest.raises(ValueError, match="max_words_first"):
        ClauseChunker(min_words_first=3, max_words_first=2)


def test_split_text_cuts_a_prompt_exactly_as_a_streamed_reply() -> None:
    """Prompts and replies go through the one splitter; TTS speaks each clause as given."""
    from phoneagent.dialog.chunker import reply_chunker, split_text

    text = "Thanks for calling Acme Dental, how can I help you today? We are open until five, etc. Goodbye."
    clauses = split_text(text)
    assert clauses == ["Thanks for calling Acme Dental,", "how can I help you today?", "We are open until five, etc.", "Goodbye."]
    chunker = reply_chunker()
    streamed = [c for i, word in enumerate(text.split(" ")) for c in chunker.push(word if i == 0 else " " + word)]
    assert streamed + chunker.flush() == clauses


@pytest.mark.parametrize(("text", "first"), [
    ("Hello! How can I help you today?", "Hello!"),
    ("Sure. Your order ships on Monday.", "Sure."),
    ("Yes? What else can I do?", "Yes?"),
    ("Mr. Smith will call you back tomorrow.", "Mr. Smith will call you back"),  # an abbreviation is no sentence end
    ("Okay, let me see what I can do.", "Okay, let me see what I"),  # a comma is no sentence: 2-6 words as before
])
def test_a_reply_speaks_a_short_first_sentence_at_once(text: str, first: str) -> None:
    assert chunk(text, reply_chunker())[0] == first


def test_a_hurried_first_clause_ends_at_the_next_word_and_later_clauses_do_not_change() -> None:
    """Once the caller is waiting, the first clause goes out from `hurry` words, at a word
    boundary, never mid-word; the rest of the reply is cut as without it."""
    text = "I'll close at five on Saturday, and at noon on Sunday. Anything else?"
    calm = chunk_tokens([w if i == 0 else " " + w for i, w in enumerate(text.split(" "))], reply_chunker())
    assert calm == ["I'll close at five on Saturday,", "and at noon on Sunday. Anything else?"]
    c = reply_chunker()
    c.hurry(3)
    out = []
    for i, w in enumerate(text.split(" ")):
        out += c.push(w if i == 0 else " " + w)
    assert out + c.flush() == ["I'll close at", "five on Saturday, and at noon on Sunday.", "Anything else?"]
    assert reply_chunker()._hurry == 0 and c._hurry == 0  # a flush ends the hurry with the reply


def test_hurry_after_the_first_clause_or_within_a_word_changes_nothing_already_decided() -> None:
    c = reply_chunker()
    out = c.push("Sure. Your order")  # the first sentence went at once
    c.hurry(3)
    out += c.push(" ships on Monday from the warehouse in Leeds, as planned.")
    assert out + c.flush() == ["Sure.", "Your order ships on Monday from the warehouse in Leeds,", "as planned."]
    c = reply_chunker()
    out = c.push("Your order num")
    c.hurry(2)  # already past two words: the cut waits for the word in progress to end
    out += c.push("ber is ready.")
    assert out + c.flush() == ["Your order number", "is ready."]
    with pytest.raises(ValueError, match="at least 1"):
        c.hurry(0)


@given(st.text(alphabet="abc ,.!?", max_size=80), st.integers(1, 6), st.integers(0, 80))
@settings(max_examples=300, deadline=None)
def test_a_hurried_chunker_loses_and_adds_no_characters(text: str, words: int, at: int) -> None:
    c = reply_chunker()
    out = c.push(text[:at])
    c.hurry(words)
    out += c.push(text[at:])
    out += c.flush()
    def words(clauses: list[str]) -> list[str]:  # a lone mark stranded by a cut is dropped, as at the fixed cap
        return [w for w in " ".join(clauses).split() if any(c.isalnum() for c in w)]

    assert words(out) == words(chunk(text, reply_chunker()))  # the same words; only the first cut may move
