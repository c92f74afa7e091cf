"""Cut the LLM's token stream into clauses for TTS.

Why clauses: TTS can start on the first clause while the LLM is still generating, so a short
first clause lowers the time to first audio; later clauses are longer because a TTS voice
phrases a whole clause better than a fragment.

Tokens split words and punctuation anywhere, so both stages work one character at a time and
decide with at most a few characters of look-ahead: the clauses are the same for every
tokenisation of the same text.

- `_Cleaner` drops what must never be spoken: markdown (`*bold*`, `code`, ``` fences, "#"
  headings, "-" bullets at line start) and JSON objects (a tool call the model wrote as text).
- `ClauseChunker` collapses whitespace and splits after . ! ? , ; : – — when the next
  character is whitespace (so "3,500", "10:30", "4.5", "$12.99", "john.doe@x.com" and
  "https://x.com" never split), except after abbreviations ("Dr.", "e.g.", "a.m.") and only once
  the clause has enough words. An em dash splits even without a space ("well—actually").
  A clause that reaches `max_words` is cut at the next space.
"""

from __future__ import annotations

_SPLIT_MARKS = frozenset(".!?,;:–—")
_CLOSERS = "\"')]”’»"  # may follow the mark: 'He said "yes." Then'
_OPENERS = "\"'([“‘«"
# Words that end in "." without ending a sentence. Words that often do end one ("etc.",
# "sun.", "min.") are left out: a wrong split costs a little prosody, a missed one latency.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft vs approx appt dept est inc ltd co corp ext tel ave blvd rd "
    "apt ste gen sgt capt lt col gov sen rep rev hon fig vol jan feb apr jun jul aug sep sept "
    "oct nov dec mon tue tues wed thu thur thurs fri".split()
)


def _is_abbreviation(word: str) -> bool:
    """`word` ends in "."; True for "Dr.", "e.g.", "a.m.", "U.S.", "J." (an initial)."""
    stem = word.lstrip(_OPENERS)[:-1]
    if stem.lower() in _ABBREVIATIONS:
        return True
    if len(stem) == 1:
        return stem.isalpha() and stem.isupper()
    parts = stem.split(".")
    return len(parts) > 1 and all(len(p) == 1 and p.isalpha() for p in parts)


def _words(text: str) -> int:
    return sum(1 for w in text.split() if any(c.isalnum() for c in w))


class _Cleaner:
    """Character-level markup and JSON stripper. `feed` returns the characters to keep."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._line_start = True  # only whitespace since the last newline
        self._bullet = False  # holding a "-" at line start: a bullet if a space follows
        self._ticks = 0  # backticks held until we know whether they open a ``` fence
        self._fence = False
        self._depth = 0  # inside a JSON object when > 0
        self._in_string = False
        self._escaped = False

    def feed(self, ch: str) -> str:
        if self._depth:
            return self._json(ch)
        if self._bullet:
            self._bullet = False
            return "" if ch in " \t" else "-" + self.feed(ch)
        if ch == "`":
            self._ticks += 1
            return ""
        if self._ticks:
            # One or two backticks are inline code marks (dropped, the code stays); three or
            # more open or close a fence, whose content is never spoken.
            fence, self._ticks = self._ticks >= 3, 0
            if fence:
                self._fence = not self._fence
                return " " + self.feed(ch)  # the fence stood between words
        if self._fence:
            return ""
        if ch in "\r\n":
            self._line_start = True
            return "\n"
        if self._line_start:
            if ch in " \t#>":
                return " " if ch in " \t" else ""
            self._line_start = False
            if ch == "-":
                self._bullet = True
                return ""
        if ch == "{":
            self._depth = 1
            return ""
        return "" if ch in "*•" else ch

    def _json(self, ch: str) -> str:
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif ch == "\\":
                self._escaped = True
            elif ch == '"':
                self._in_string = False
        elif ch == '"':
            self._in_string = True
        elif ch == "{":
            self._depth += 1
        elif ch == "}":
            self._depth -= 1
            if not self._depth:
                return " "  # the object stood between words
        return ""

    def flush(self) -> str:
        """End of text: a lone held "-" is kept; an unclosed fence or object is dropped."""
        out = "-" if self._bullet else ""
        self.reset()
        return out


def clean_text(text: str) -> str:
    """What TTS may speak of `text`, whitespace collapsed: what the clauses add up to."""
    cleaner = _Cleaner()
    out = "".join(cleaner.feed(ch) for ch in text) + cleaner.flush()
    return " ".join(out.split())


class ClauseChunker:
    """One per reply stream: `push` tokens as they arrive, `flush` when generation ends."""

    def __init__(self, min_words_first: int = 3, min_words: int = 6, max_words: int = 25, max_words_first: int | None = None,
                 short_first_sentence: bool = False) -> None:
        """`max_words_first` (None = `max_words`) cuts a long unpunctuated opening at a space,
        so the caller hears the first words while the model is still writing the sentence.
        `short_first_sentence`: a whole first sentence goes at once however short ("Sure."
        "Hello!"): the caller is waiting in silence, and a complete sentence keeps its prosody."""
        if not 1 <= min_words_first <= max_words or not 1 <= min_words <= max_words:
            raise ValueError(
                f"need 1 <= min_words_first ({min_words_first}), min_words ({min_words}) "
                f"<= max_words ({max_words})"
            )
        if max_words_first is not None and not min_words_first <= max_words_first:
            raise ValueError(f"need min_words_first ({min_words_first}) <= max_words_first ({max_words_first})")
        self.min_words_first = min_words_first
        self.min_words = min_words
        self.max_words = max_words
        self.max_words_first = max_words_first or max_words
        self.short_first_sentence = short_first_sentence
        self.reset()

    def reset(self) -> None:
        """Drop everything buffered (generation was cancelled); the next clause is a first one."""
        self._cleaner = _Cleaner()
        self._buf = ""
        self._space = False  # whitespace seen after the buffered text
        self._newline = False  # ... and it held a line break (list items often lack punctuation)
        self._first = True
        self._hurry = 0  # > 0: the caller is waiting, the first clause ends at a word from this many words

    def hurry(self, words: int) -> None:
        """The caller is waiting in silence now (the turn's endpoint is final): the first clause
        ends at the next word boundary once it has `words` words, punctuation or not. A reply
        that got its first clause ready before the endpoint (speculation, a fast model) keeps
        its natural phrase; a slow one speaks its first words sooner."""
        if words < 1:
            raise ValueError(f"hurry needs at least 1 word, got {words}")
        self._hurry = max(words, self.min_words_first)

    def push(self, token_text: str) -> list[str]:
        """Clauses completed by this token, in order (usually none or one)."""
        out: list[str] = []
        for ch in token_text:
            for c in self._cleaner.feed(ch):
                clause = self._put(c)
                if clause:
                    out.append(clause)
        return out

    def flush(self) -> list[str]:
        """The rest of the reply, and a fresh state for the next one. A remainder with no letter
        or digit (a stray "." after a dropped tool call) has nothing to speak and is dropped."""
        out = [c for c in (self._put(ch) for ch in self._cleaner.flush()) if c]
        rest = self._buf.strip()
        if any(c.isalnum() for c in rest):
            out.append(rest)
        self.reset()
        return out

    def _put(self, ch: str) -> str | None:
        if ch.isspace():
            if not self._buf:
                return None
            self._space = True
            self._newline = self._newline or ch == "\n"
            return self._boundary(at_space=True)
        if self._space:
            self._buf += " "
            self._space = self._newline = False
        self._buf += ch
        return self._boundary(at_space=False) if ch == "—" else None

    def _boundary(self, *, at_space: bool) -> str | None:
        words = _words(self._buf)
        need = self.min_words_first if self._first else self.min_words
        cap = self.max_words
        if self._first:
            cap = min(self.max_words_first, self._hurry) if self._hurry else self.max_words_first
        sentence = (self.short_first_sentence and self._first and at_space and self._ends_clause()
                    and self._buf.rstrip(_CLOSERS)[-1:] in "!?.")
        if (words >= need and (self._newline or self._ends_clause())) or sentence or (at_space and words >= cap):
            clause, self._buf = self._buf.strip(), ""
            self._space = self._newline = self._first = False
            return clause
        return None

    def _ends_clause(self) -> bool:
        core = self._buf.rstrip(_CLOSERS)
        if not core or core[-1] not in _SPLIT_MARKS:
            return False
        return core[-1] != "." or not _is_abbreviation(core.split()[-1])



def reply_chunker() -> ClauseChunker:
    """How replies and prompts are cut: a short first clause (a whole sentence, or 2-6 words)
    for the first audio."""
    return ClauseChunker(min_words_first=2, max_words_first=6, short_first_sentence=True)


def split_text(text: str) -> list[str]:
    """A whole known text (a fixed prompt) cut into clauses exactly as a streamed reply would
    be, so the first clause is spoken while the rest is synthesised."""
    chunker = reply_chunker()
    return [*chunker.push(text), *chunker.flush()]
