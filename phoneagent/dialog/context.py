"""Conversation state that keeps only what the caller actually heard.

After a barge-in the LLM must not believe it said the whole reply: the next answer would build
on words the caller never heard ("as I said, the price is..."). `SpokenReply` records each
clause with its audio length as TTS produces it; the playout report's `played_ms` then tells
how far the caller got, down to an approximate word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from models.base import Message, ToolCall, estimate_tokens

CUT_MARK = "—"  # ends a reply the caller cut off, so the LLM sees it was interrupted
_EPS_MS = 1e-6
_ROLES = {"user": "caller", "assistant": "agent", "tool": "tool", "system": "system"}


@dataclass(frozen=True, slots=True)
class SpokenClause:
    text: str
    duration_ms: float

    @property
    def cut_before_audio(self) -> bool:
        """Words whose synthesis was stopped before any audio (a barge-in or hangup): never heard."""
        return self.duration_ms <= 0 and bool(self.text)


class SpokenReply:
    """The clauses of one agent reply in playout order, each with its synthesised duration."""

    def __init__(self) -> None:
        self._clauses: list[SpokenClause] = []

    def add_clause(self, text: str, duration_ms: float) -> None:
        """A clause TTS has turned into `duration_ms` of audio (queued for playout)."""
        if duration_ms < 0:
            raise ValueError(f"duration_ms must be >= 0, got {duration_ms}")
        self._clauses.append(SpokenClause(" ".join(text.split()), duration_ms))

    def add_audio(self, duration_ms: float) -> None:
        """More audio for the last clause (TTS that streams one clause in several chunks)."""
        if not self._clauses:
            raise ValueError("add_audio before any add_clause: which clause is this audio for?")
        if duration_ms < 0:
            raise ValueError(f"duration_ms must be >= 0, got {duration_ms}")
        last = self._clauses[-1]
        self._clauses[-1] = SpokenClause(last.text, last.duration_ms + duration_ms)

    @property
    def clauses(self) -> tuple[SpokenClause, ...]:
        return tuple(self._clauses)

    @property
    def text(self) -> str:
        """The whole reply as generated."""
        return " ".join(c.text for c in self._clauses if c.text)

    @property
    def total_ms(self) -> float:
        return sum(c.duration_ms for c in self._clauses)

    def heard_text(self, played_ms: float) -> str:
        """Clauses fully played, then the words of the clause in progress whose end falls within
        its played share of characters (audio time is taken as proportional to characters). A
        clause without audio (a barge-in or hangup cut its synthesis) was not heard, nor what follows it.
        Ends with CUT_MARK when anything was left unheard, also exactly at a clause boundary;
        "" when nothing was heard."""
        if played_ms <= 0:
            return ""
        parts: list[str] = []
        start = 0.0
        whole = True
        for clause in self._clauses:
            end = start + clause.duration_ms
            if played_ms >= end - _EPS_MS and not clause.cut_before_audio:
                parts.append(clause.text)
                start = end
                continue
            whole = False
            if not clause.cut_before_audio:
                share = (played_ms - start) / clause.duration_ms * len(clause.text)
                parts += [m.group() for m in re.finditer(r"\S+", clause.text) if m.end() <= share + _EPS_MS]
            break
        heard = " ".join(p for p in parts if p)
        if heard and not whole:
            heard = heard.rstrip(" ,;:–" + CUT_MARK) + CUT_MARK
        return heard

    def unheard_text(self, played_ms: float) -> str:
        """The clause in progress (from its start) and all after it: what to say again when a
        barge-in turns out to be a false alarm."""
        end = 0.0
        for i, clause in enumerate(self._clauses):
            end += clause.duration_ms
            if played_ms <= 0 or clause.cut_before_audio or played_ms < end - _EPS_MS:
                return " ".join(c.text for c in self._clauses[i:] if c.text)
        return ""


Sizer = Callable[[Sequence[Message]], int]


class Conversation:
    """The call's messages for the LLM, minus the system prompt (which is passed in fresh).

    Consecutive messages of the same speaker are merged, so chat templates that need strictly
    alternating turns (Gemma) accept the history: a reply cut off before any audio leaves
    nothing behind, and the caller's next words join their previous ones.
    """

    def __init__(self, budget: int = 2048 - 64, size: Sizer = estimate_tokens, trim_to: float = 0.75) -> None:
        """`budget` bounds the whole prompt (system prompt, history, the pending caller turn) as
        measured by `size`: the LLM's real token count in a call (`for_llm`), so a long call
        never outgrows the model's context. When it is exceeded, the oldest turns go until
        `trim_to` of it is used, in one step, so the LLM's prefix cache stays valid for the
        turns after a trim."""
        if budget <= 0 or not 0.0 < trim_to <= 1.0:
            raise ValueError(f"need budget > 0 ({budget}) and 0 < trim_to <= 1 ({trim_to})")
        self.budget = budget
        self.size = size
        self.trim_to = trim_to
        self._history: list[Message] = []
        self._start = 0  # first message still sent to the LLM; only moves forward

    @classmethod
    def for_llm(cls, context_tokens: int, reply_tokens: int, count_tokens: Sizer, trim_to: float = 0.75) -> Conversation:
        """The budget of a model with `context_tokens` of context that must still fit a reply
        of `reply_tokens`, counted by the model's own tokeniser."""
        if reply_tokens >= context_tokens:
            raise ValueError(f"a reply of {reply_tokens} tokens cannot fit a context of {context_tokens}")
        return cls(context_tokens - reply_tokens, count_tokens, trim_to)

    @property
    def history(self) -> tuple[Message, ...]:
        """Everything said in the call, trimmed or not."""
        return tuple(self._history)

    def add_user(self, text: str) -> None:
        """What the caller said (blank text, e.g. an empty transcript, is ignored)."""
        self._add("user", text)

    def add_agent_heard(self, reply: SpokenReply, played_ms: float, interrupted: bool) -> str:
        """Store what the caller heard of `reply` and return it: the whole text if playout ran
        to its end, else `reply.heard_text(played_ms)`. Nothing is stored when nothing was
        heard: a note such as "(interrupted)" would be imitated by the LLM, and to the caller
        the agent simply never spoke."""
        text = reply.heard_text(played_ms) if interrupted else reply.text
        self._add("assistant", text)
        return text

    def add_tool_call(self, call: ToolCall) -> None:
        """The agent's constrained tool call (never merged with its spoken turns)."""
        self._history.append(Message("assistant", "", tool_call=call))

    def add_tool_result(self, name: str, json_text: str) -> None:
        """A tool's result; it belongs to the current turn and is trimmed with it."""
        self._history.append(Message("tool", json_text, name=name))

    def messages(self, system_prompt: str, pending_user: str = "") -> list[Message]:
        """The system prompt and the history that fits the budget, with `pending_user` (the
        caller's turn being answered, not yet committed) as the last caller message. The
        oldest whole turns (a caller message and everything up to the next one, tool results
        included) are dropped first; the newest turn is always kept."""
        system = Message("system", system_prompt)
        tail = self._pending(pending_user)
        self._trim(system, tail)
        history = self._history[self._start:]
        if tail and history and history[-1].role == "user":  # merged, as add_user would
            history = [*history[:-1], Message("user", f"{history[-1].content} {tail[0].content}")]
            tail = []
        return [system, *history, *tail]

    def transcript(self) -> list[tuple[str, str]]:
        """(role, text) for storage, roles as the call store names them: caller, agent, tool."""
        return [
            (_ROLES[m.role], f"{m.name}: {m.content}" if m.role == "tool" else m.content)
            for m in self._history if m.tool_call is None
        ]

    @staticmethod
    def _pending(text: str) -> list[Message]:
        text = " ".join(text.split())
        return [Message("user", text)] if text else []

    def _add(self, role: Literal["user", "assistant"], text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        if self._history and self._history[-1].role == role and self._history[-1].tool_call is None:
            text = f"{self._history.pop().content} {text}"
        self._history.append(Message(role, text))

    def _trim(self, system: Message, tail: list[Message]) -> None:
        if self.size([system, *self._history[self._start:], *tail]) <= self.budget:
            return
        turns = [i for i in range(self._start + 1, len(self._history)) if self._history[i].role == "user"]
        if tail:  # the pending turn is the newest: every earlier one may go
            turns.append(len(self._history))
        for i in turns:
            self._start = i
            if self.size([system, *self._history[i:], *tail]) <= self.budget * self.trim_to:
                break
