"""Who speaks for the agent: at most one task at a time holds the floor (a reply, a prompt, a
handover). Whatever takes it next first cancels what held it; cancelling stops every live
generation and synthesis of the call, so nothing keeps using the engines for audio nobody hears."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from phoneagent.dialog.call import CallContext
from phoneagent.dialog.tasks import let_finish, reap


class Floor:
    RECORD_GRACE_S = 1.0  # after a barge-in, how long the reply may take to record what was heard

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.task: asyncio.Task[None] | None = None
        self._leaving: set[asyncio.Task[None]] = set()  # holders being stopped (in their grace for recording)

    def take(self, work: Coroutine[Any, Any, None] | asyncio.Task[None]) -> asyncio.Task[None]:
        """Give the floor to `work` (call `cancel` first when something may hold it)."""
        self.task = work if isinstance(work, asyncio.Task) else asyncio.create_task(work)
        return self.task

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    async def cancel(self, why: str, *, record_heard: bool = False) -> None:
        """Stop whoever holds the floor. Returns only once every earlier holder has ended, also
        one that another cancel is still stopping (a barge-in decided off the dialog loop): the
        next turn must not enter the conversation before the cut reply has recorded what was heard."""
        self.ctx.cancel_live(why)
        task, self.task = self.task, None
        me = asyncio.current_task()
        if task is not None and not task.done() and task is not me:
            self._leaving.add(task)
            task.add_done_callback(self._leaving.discard)
        for holder in [t for t in self._leaving if t is not me]:
            # An earlier holder keeps its grace too: whoever was stopping it may be stopped itself.
            if record_heard or holder is not task:  # playout was cleared: its waiter resolves now and the turn is recorded
                await let_finish(self.ctx.clock, holder, self.RECORD_GRACE_S)
            if not holder.done():
                holder.cancel()
                await reap(holder)
