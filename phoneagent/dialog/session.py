"""One call's real-time dialog, composed from its parts:

- `turns.TurnTaking`: caller audio -> VAD -> endpointer -> what the agent does (barge-in,
  speculation, end of turn);
- `reply.Reply`: one spoken answer (STT -> LLM tokens -> clauses -> TTS -> playout);
- `voice.Voice`: fixed prompts and the spoken fallback; `floor.Floor`: who speaks now;
- features as collaborators: key presses (`keypad`), handing over to a person (`transfer`),
  screening an outbound answer (`outbound`);
- `record.Recorder`: turns, timings and events to the store (a store failure never ends a call).

CallDialog wires them for one call and runs its inbox: audio, digits, a 0.25 s tick for the
no-input watchdog and digit timeouts, and the call's end. Every timer runs on the call's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ari_app.call import CallControl
from phoneagent.dialog.dtmf import DigitEntry
from media.clock import Clock, sleep
from models.base import Transcript
from audiosocket.playout import Playout
from audiosocket.protocol import Audio, Dtmf
from audiosocket.server import CallEnded, InboundItem, KeyPress
from db import AsyncCallStore
from phoneagent.dialog.actions import Actions, ToolCaller, look_up_caller, system_prompt
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.config import AgentConfig, DialogEngines
from phoneagent.dialog.context import Conversation
from phoneagent.dialog.floor import Floor
from phoneagent.dialog.keypad import Keypad
from phoneagent.dialog.memory import remember
from phoneagent.dialog.media import CallMedia
from phoneagent.dialog.amd.screen import screen
from phoneagent.dialog.record import Recorder, TurnTiming
from phoneagent.dialog.reply import Reply, keypad_transcript
from phoneagent.dialog.state import CallState
from phoneagent.dialog.tasks import reap
from phoneagent.dialog.transfer import Handover
from phoneagent.dialog.turns import CallerAudio, TurnTaking
from phoneagent.dialog.voice import Phrases, Voice

__all__ = ["CallDialog"]


@dataclass(frozen=True)
class _Tick:
    """Wakes the inbox when no audio arrives (an unbridged or muted channel sends nothing), so
    the watchdog and digit timeouts still run."""


class CallDialog:
    """Run with `await CallDialog(...).run(session)`; it returns when the call ends."""

    TICK_S = 0.25

    def __init__(self, engines: DialogEngines, config: AgentConfig | None = None, *, store: AsyncCallStore | None = None,
                 control: CallControl | None = None, tools: ToolCaller | None = None, phrases: Phrases | None = None,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """`tools`: runs the agent's declared webhooks (ToolRunner); None when it has none.
        `phrases`: the agent's fillers already synthesised, shared by its calls (see Voice).
        `wall_clock`: the date, for what "the last 30 days" of caller memory means."""
        self.wall_clock = wall_clock
        self.engines = engines
        self.tools = tools
        self.phrases = phrases
        self.config = config or AgentConfig()
        self.store = store
        self.control = control
        # The history's budget is the LLM's real context minus room for a reply, in its tokens.
        self.conversation = Conversation.for_llm(engines.context_tokens, self.config.max_reply_tokens, engines.count_tokens)
        self.call_id = ""
        self.record: Recorder | None = None
        self.state: CallState | None = None
        self.playout: Playout | None = None
        self._handover_asked = ""  # a supervisor asked for a person (console), taken at the next tick

    def ask_for_handover(self, reason: str) -> bool:
        """Hand the call to a person from outside the call (the console's button): the agent
        stops, says its transfer notice and transfers as if the caller had asked. False when
        there is nobody to transfer to or the call is ending, being or already transferred."""
        state, ctl = self.state, self.control
        if (state is None or state.ending or state.transferring or state.outcome == "transferred"
                or ctl is None or not ctl.transfer_available):
            return False
        self._handover_asked = reason
        return True

    # --- what the call left behind (tests, demo, benchmarks) ---
    @property
    def turns(self) -> list[dict[str, Any]]:
        return self.record.turns if self.record else []

    @property
    def events(self) -> list[tuple[float, str, dict[str, Any]]]:
        return self.record.events if self.record else []

    @property
    def starved_ms(self) -> float:
        """Silence the caller heard inside the agent's speech: playout ticks with a reply under
        way but its next audio not synthesised yet (a gap between clauses)."""
        return self.playout.buffer.underruns * self.playout.frame_ms if self.playout else 0.0

    @property
    def outcome(self) -> str:
        return self.state.outcome if self.state else "completed"

    @property
    def summary(self) -> str | None:
        return self.state.summary if self.state else None

    # --- the call ---
    async def run(self, session: CallMedia) -> None:
        cfg, ctl = self.config, self.control
        clock: Clock = session.clock
        self.call_id = str(session.call_id)
        fmt = await session.media_format()
        self.playout = playout = await session.start_playout()
        self.record = record = Recorder(self.call_id, clock, self.store)
        self.state = state = CallState(last_activity=clock.now())
        hold = cfg.hold_llm_for_first_audio
        ctx = CallContext(self.call_id, cfg, self.engines, clock, fmt.sample_rate, playout, self.conversation, record, state, ctl,
                          system_prompt=system_prompt(cfg), hold_llm=self.engines.llm_on_cpu if hold is None else hold,
                          today=lambda: self.wall_clock().astimezone().date())
        voice = Voice(ctx, self.phrases)
        floor = Floor(ctx)
        audio = CallerAudio(self.engines.vad, fmt.sample_rate, cfg.preroll_s, cfg.endpointer)
        keypad = Keypad(cfg.dtmf, clock, on_flood=lambda thrown: record.event("dtmf_flood", dropped_entry=thrown))
        handover = Handover(ctx, voice, audio, keypad)
        actions = Actions(ctx, voice, handover.run, self.tools)

        def make_reply(utterance: bytes, timing: TurnTiming, transcript: Transcript | None = None) -> Reply:
            return Reply(ctx, voice, utterance, timing, handover=handover.run, actions=actions, transcript=transcript)

        turns = TurnTaking(ctx, audio, floor, make_reply)
        if ctl is None or ctl.direction == "inbound":  # an outbound call was stored by the dialler
            await record.write("start_call", self.call_id, direction="inbound", caller=(ctl.caller_number or None) if ctl else None,
                               agent=cfg.name, media=f"slin{fmt.sample_rate // 1000}/{fmt.frame_ms:g}ms",
                               callee=(ctl.callee or None) if ctl else None)
        opening, over = cfg.greeting, False
        if ctl is not None and ctl.direction == "outbound":
            opening, over = cfg.outbound_greeting, await screen(ctx, voice, session)
        else:
            if cfg.caller_lookup is not None:
                opening = await look_up_caller(ctx, self.tools, ctl.caller_number if ctl else "") or opening
            await remember(ctx, self.store, cfg.caller_memory, ctl.caller_number if ctl else "", self.wall_clock())
        if ctl is not None and ctl.recording_notice:
            opening = f"{ctl.recording_notice} {opening}"
        if not over:
            floor.take(voice.say_or_fail(opening, role_text="greeting"))
            ctx.warm(opening)  # while it plays, not after: the caller may answer at once
        preparing = asyncio.create_task(actions.prepare())  # fillers, while the greeting plays

        async def on_keys(entries: list[DigitEntry]) -> None:
            for entry in entries:
                record.event("keypad", digits=entry.digits, ended_by=entry.ended_by, escape=entry.escape)
                ctx.touch()
                if state.transferring or state.ending:
                    continue
                if entry.escape:
                    await floor.cancel("keypad escape")
                    floor.take(handover.run(f"the caller pressed {entry.digits}"))
                elif entry.digits:
                    await floor.cancel("keypad entry")
                    reply = make_reply(b"", TurnTiming(endpoint=clock.now()), keypad_transcript(entry.digits))
                    reply.release()
                    floor.take(reply.start())

        # One slot: the session's own bounded queue (drop-oldest) stays the place audio waits.
        inbox: asyncio.Queue[InboundItem | _Tick] = asyncio.Queue(maxsize=1)
        pumps = [asyncio.create_task(self._receive(session, inbox)), asyncio.create_task(self._tick(clock, inbox))]
        end_reason = "caller_hangup"
        next_check = clock.now()
        try:
            while not state.ending and not over:
                item = await inbox.get()
                if clock.now() >= next_check:  # on the tick's cadence, whatever woke the loop
                    next_check = clock.now() + self.TICK_S
                    await self._watchdog(ctx, voice, floor, audio, keypad)
                    if state.ending:
                        break
                if isinstance(item, CallEnded):
                    end_reason = item.reason.value
                    break
                if isinstance(item, Audio):
                    if session.is_ended:  # the caller has gone: audio still queued is never answered
                        continue  # (an overloaded box would work through it before seeing the hangup)
                    await turns.on_audio(item.pcm)
                elif isinstance(item, Dtmf):
                    await on_keys(keypad.press("audiosocket", item.digit, item.at if isinstance(item, KeyPress) else None))
                if ctl is not None:
                    for digit in ctl.drain_digits():
                        await on_keys(keypad.press("ari", digit))
                await on_keys(keypad.poll())
                if self._handover_asked and not state.transferring:
                    reason, self._handover_asked = self._handover_asked, ""
                    record.event("handover_asked", reason=reason)
                    await floor.cancel("handover asked", record_heard=True)
                    floor.take(handover.run(reason))
            if state.ending:
                end_reason = "agent_hangup"
            elif ctl is not None and ctl.ended_by == "shutdown":  # ARI hung the caller up first: not their doing
                end_reason = "shutdown"
        except asyncio.CancelledError:  # the service is shutting down under this call
            end_reason = "interrupted"
            raise
        finally:
            if end_reason in ("shutdown", "interrupted", "connection_lost") and state.outcome == "completed":
                state.outcome = "interrupted"  # cut by the service going down or the network, not finished
            for pump in (*pumps, preparing):
                pump.cancel()
            try:
                # Hangup mid-sentence: stop playout first so the reply task records what was heard.
                playout.clear()
                await turns.close()
                await ctx.stop_warming()
                await floor.cancel("call ended", record_heard=True)
                for pump in (*pumps, preparing):
                    await reap(pump)
            finally:
                # The server cancels a handler still busy past its grace (an overloaded box, the
                # store's writer backed up): the clean-up may be cut off, the record's end never.
                await asyncio.shield(record.write(
                    "finish_call", self.call_id, end_reason=end_reason, outcome=state.outcome, summary=state.summary,
                    disposition=state.disposition, transfer_target=state.transfer_target, amd_result=state.amd_result))
        if state.ending and not session.is_ended:
            await session.hangup()

    @staticmethod
    async def _receive(session: CallMedia, inbox: asyncio.Queue[InboundItem | _Tick]) -> None:
        while True:
            item = await session.receive()
            await inbox.put(item)
            if isinstance(item, CallEnded):
                return

    async def _tick(self, clock: Clock, inbox: asyncio.Queue[InboundItem | _Tick]) -> None:
        while True:
            await sleep(clock, self.TICK_S)
            with contextlib.suppress(asyncio.QueueFull):  # full: the loop is waking anyway
                inbox.put_nowait(_Tick())

    async def _watchdog(self, ctx: CallContext, voice: Voice, floor: Floor, audio: CallerAudio, keypad: Keypad) -> None:
        """No input for `no_input_s` while nobody is doing anything: a reprompt, then goodbye."""
        cfg, state = ctx.config, ctx.state
        busy = ctx.playout.speaking or floor.busy or audio.in_turn or state.transferring or bool(keypad.pending)
        if busy or state.ending or ctx.clock.now() - state.last_activity < cfg.no_input_s:  # never a reprompt after goodbye
            return
        if state.reprompts < cfg.max_reprompts:
            state.reprompts += 1
            ctx.record.event("reprompt", n=state.reprompts)
            ctx.touch()
            floor.take(voice.say(cfg.reprompt, role_text="reprompt"))
        else:
            ctx.record.event("no_input_hangup")
            state.outcome = "no_input"
            with contextlib.suppress(Exception):
                await voice.say(cfg.goodbye_no_input, role_text="goodbye")
            state.ending = True
