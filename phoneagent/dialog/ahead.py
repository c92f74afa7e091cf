"""The caller's words evaluated ahead: while they are still speaking, the turn so far is
transcribed and its words go into the call's LLM cache, so the reply at the pause evaluates
only the last few words.

Why: on a CPU the reply's prompt is most of its time to first token. Measured with the
bundled Qwen2.5 0.5B on two cores of an AMD EPYC, after a cached conversation: 20 new tokens
(a caller's question and the turn's markers) 263 ms, 12 tokens 173 ms, 5 tokens 101 ms. A
caller speaking leaves the CPU idle at one call, so that work can be done before the pause.

Only when nothing else needs the STT or the LLM (`DialogEngines.spare`: another caller's turn
always comes first), only while the caller speaks to an agent that is silent (speech over the
agent is judged by its words first), and only with an LLM on the CPU. The last word heard so
far is left out: it may be cut mid-way ("Satur"). A transcript that the final one does not
continue costs nothing but the work: the LLM keeps the longest common prefix.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from models.base import Message
from models.scheduler import Priority
from phoneagent.dialog.backchannel import words
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.tasks import stop

log = logging.getLogger(__name__)


def words_so_far(text: str) -> str:
    """The transcript of a turn still being spoken without its last word: that word may be cut
    ("Satur"), and it carries the full stop or question mark whisper ends what it was given with."""
    kept = text.split()[:-1]
    if not kept or not words(" ".join(kept)):
        return ""
    return " ".join(kept)


class WordsAhead:
    """One job at a time per call: transcribe the turn so far, then evaluate its words."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.task: asyncio.Task[None] | None = None
        self._next_s = ctx.config.words_ahead_s  # turn audio (seconds) at which the next job may start

    @property
    def enabled(self) -> bool:
        return self.ctx.config.words_ahead_s > 0 and self.ctx.engines.llm_on_cpu

    def on_speech(self, turn_seconds: float, utterance: Callable[[], bytes]) -> None:
        """The caller has spoken `turn_seconds` of an open turn (`utterance()`: the audio so far).
        Called on every 20 ms chunk of a turn: the cheapest test goes first."""
        if turn_seconds < self._next_s or not self.enabled or (self.task is not None and not self.task.done()) or not self.ctx.engines.spare:
            return
        self._next_s = turn_seconds + self.ctx.config.words_ahead_s
        self.task = asyncio.create_task(self._ahead(utterance(), turn_seconds))

    async def end(self) -> None:
        """The turn paused, ended or became something else: no job outlives it."""
        self._next_s = self.ctx.config.words_ahead_s
        task, self.task = self.task, None
        await stop(task)

    async def _ahead(self, utterance: bytes, turn_seconds: float) -> None:
        ctx = self.ctx
        try:
            tr = await ctx.engines.transcribe(utterance, ctx.rate, priority=Priority.BACKGROUND)
            said = words_so_far(tr.normalized)
            if not said:
                return
            messages: list[Message] = ctx.conversation.messages(ctx.system_prompt, pending_user=said)
            await ctx.engines.prefill(messages, session_key=ctx.call_id, open_turn=True)
            ctx.record.event("words_ahead", at_s=round(turn_seconds, 2), words=said)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # shed under load, an engine error: the reply evaluates it all
            log.debug("call %s: words ahead skipped: %r", ctx.call_id, exc)
