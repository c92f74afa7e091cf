"""One spoken reply to one caller turn: STT -> LLM tokens -> clauses -> TTS -> playout.

Every stage streams into the next: the first clause is synthesised and played while the LLM is
still generating. A reply can start before the caller's turn is known to be over (speculation):
until `release()` it may compute but must not speak, record or touch the conversation. When it
has played, `heard` is what the caller heard and `unheard` what a barge-in cut off.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from audiosocket.playout import PlayoutReport
from media.clock import sleep, wait_for
from models.base import Cancelled, CancelToken, Message, Transcript
from models.scheduler import EngineBusy, Priority
from phoneagent.dialog.actions import REPLY, Actions, rule_step
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.capture import merged
from phoneagent.dialog.chunker import reply_chunker
from phoneagent.dialog.context import SpokenReply
from phoneagent.dialog.intents import escalation_reason, plain_words
from phoneagent.dialog.record import TurnTiming
from phoneagent.dialog.tasks import stop
from phoneagent.dialog.voice import Voice

Handover = Callable[[str], Awaitable[None]]


async def _nothing() -> None:
    return None


def keypad_transcript(digits: str) -> Transcript:
    """A keypad entry as the caller's turn (typed, so certain)."""
    said = f"(keypad) {digits}"
    return Transcript(text=said, normalized=said, confidence=1.0, no_speech_prob=0.0, language="", audio_s=0.0, decode_s=0.0)


class Reply:
    def __init__(self, ctx: CallContext, voice: Voice, utterance: bytes, timing: TurnTiming, *,
                 handover: Handover, actions: Actions | None = None, transcript: Transcript | None = None) -> None:
        """`transcript`: what the caller said is already known (a keypad entry, see
        `keypad_transcript`, or the backchannel check's STT), so no STT. `handover`: called when the caller
        asks for a person (on a call with call control). `actions`: the agent's tools and
        built-in steps, chosen before the answer (None: it only talks)."""
        self.ctx = ctx
        self.actions = actions if actions is not None and actions.offered else None
        self.voice = voice
        self.utterance = utterance
        self.timing = timing
        self.transcript = transcript
        self.handover = handover
        self._go = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.heard: str | None = None  # what the caller heard, once played
        self.unheard = ""  # what a barge-in cut off
        # Told the caller's words as soon as they are known, before the turn is over (a
        # speculative reply's words tell the endpointer whether the caller sounds finished).
        self.on_transcript: Callable[[Transcript], None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._respond())
        return self.task

    def release(self) -> None:
        """The caller's turn is over: the reply may speak (and record) now."""
        self._go.set()

    async def drop(self) -> None:
        """Throw away a speculative reply (the caller went on talking)."""
        await stop(self.task)

    # --- the pipeline ---
    async def _respond(self) -> None:
        ctx, cfg, go = self.ctx, self.ctx.config, self._go
        try:
            if self.transcript is not None:
                tr = self.transcript
            else:
                tr = await self._transcribe()
        except EngineBusy:
            await go.wait()
            ctx.record.event("busy", engine="stt")
            await self.voice.say(cfg.busy, role_text="busy")
            return
        except Exception as exc:
            await go.wait()
            await self.voice.fail("stt", exc)
            return
        self.timing.stt_done = ctx.clock.now()
        if self.on_transcript is not None:
            self.on_transcript(tr)
        text = tr.normalized.strip()
        if not text or tr.confidence < cfg.min_confidence:
            await go.wait()  # (a speculative turn learns only now whether it was a barge-in)
            await self._unclear(tr, text)
            return
        why = self._escalation(text)
        if why:
            await go.wait()
            ctx.conversation.add_user(text)
            await ctx.record.turn("caller", text, self.timing, stt_confidence=tr.confidence)
            await self.handover(why)
            return
        messages = ctx.conversation.messages(ctx.system_prompt, pending_user=text)

        async def commit() -> None:
            await go.wait()
            ctx.state.clarifications = 0
            ctx.state.reprompts = 0
            ctx.state.cut_off = ""  # the caller moved on: nothing to pick up again
            ctx.state.last_question = plain_words(text)
            ctx.conversation.add_user(text)
            await ctx.record.turn("caller", text, self.timing, stt_confidence=tr.confidence)

        capture = self.actions.capture if self.actions is not None else None
        if capture is not None and capture.pending is not None:
            if capture.claims(text, tr.alternatives):  # the number asked for, or yes/no to its read-back
                await commit()
                await capture.handle(text, tr.alternatives, self._phrase, self.timing)
                return
            await go.wait()
            capture.drop("the caller moved on")
        if self.actions is not None:
            if await self._act(messages, commit):
                return
        try:
            await self._stream(messages, commit)
        except asyncio.CancelledError:
            raise
        except Cancelled:  # barge-in or hangup stopped an engine mid-step: not a failure
            return
        except EngineBusy:
            await go.wait()
            ctx.record.event("busy", engine="llm/tts")
            await self.voice.say(cfg.busy, role_text="busy")
        except Exception as exc:
            await go.wait()
            await self.voice.fail("llm/tts", exc)

    def _escalation(self, text: str) -> str:
        """Why this turn goes straight to a person ("" if not; only with call control)."""
        ctl = self.ctx.control
        if ctl is None:
            return ""
        capturing = self.actions is not None and self.actions.capture.pending is not None  # saying a number twice is no loop
        return escalation_reason(text, self.ctx.config.escalation, transfer_available=ctl.transfer_available,
                                 last_question="" if capturing else self.ctx.state.last_question)

    async def _act(self, messages: list[Message], commit: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """The constrained step before any words; True when it handled the turn (a tool, a
        transfer, the end, a refusal), False when the agent should just reply."""
        ctx, cfg, actions = self.ctx, self.ctx.config, self.actions
        assert actions is not None
        cancel = CancelToken()
        try:
            call = rule_step(messages[-1].content, cfg) or await wait_for(
                ctx.clock, actions.decide(messages, cancel, self._go), cfg.first_token_timeout_s)
            if call is None or call.name == REPLY:
                return False
            self.timing.llm_first_token = ctx.clock.now()
            await commit()
            await actions.run(call, self._phrase, self.timing)
        except asyncio.CancelledError:
            cancel.cancel("reply dropped")
            raise
        except Cancelled:
            pass
        except EngineBusy:
            await self._go.wait()
            ctx.record.event("busy", engine="llm")
            await self.voice.say(cfg.busy, role_text="busy")
        except Exception as exc:
            await self._go.wait()
            await self.voice.fail("llm/tool", exc)
        finally:
            await actions.drop_filler()
        return True

    async def _phrase(self, messages: list[Message]) -> None:
        """The LLM words a tool's result (a tool without an answer template)."""
        await self._stream(messages, _nothing)

    async def _unclear(self, tr: Transcript, text: str) -> None:
        ctx, cfg, state = self.ctx, self.ctx.config, self.ctx.state
        if not text and self.timing.barge_in is not None and state.cut_off:
            # The "interruption" had no words (a cough, a door): go on where the agent was cut.
            ctx.record.event("false_alarm_resume")
            resume, state.cut_off = state.cut_off, ""
            await self.voice.say(f"{cfg.resume_prefix} {resume}", role_text="resume")
            return
        state.clarifications += 1
        ctx.record.event("unclear", text=tr.text, confidence=round(tr.confidence, 3))
        ctl = ctx.control
        if state.clarifications >= cfg.escalation.max_failures and ctl is not None and ctl.transfer_available:
            await self.handover("the agent could not understand the caller")
            return
        if state.clarifications > cfg.max_clarifications:
            await self.voice.fail("loop", RuntimeError("caller not understood repeatedly"))
            return
        await self.voice.say(cfg.clarify, role_text="clarify")

    async def _transcribe(self) -> Transcript:
        """The caller's words; while a number or email is expected, once per slot prompt, merged."""
        ctx, cfg = self.ctx, self.ctx.config
        slot = self.actions.capture.expected if self.actions is not None else None
        if slot is None:
            return await wait_for(ctx.clock, ctx.engines.transcribe(self.utterance, ctx.rate), cfg.stt_timeout_s)
        heard = []
        for prompt in slot.stt_prompts:
            stt = ctx.engines.transcribe(self.utterance, ctx.rate, prompt=prompt, hypotheses=cfg.slot_hypotheses, repeats=slot.digits)
            heard.append(await wait_for(ctx.clock, stt, cfg.stt_timeout_s))
        return merged(heard)

    async def _stream(self, messages: list[Message], commit: Callable[[], Coroutine[Any, Any, None]]) -> None:
        reply, seg = SpokenReply(), list[int]()
        try:
            await self._stream_into(messages, commit, reply, seg)
        except asyncio.CancelledError:
            # Cancelled after the grace for recording (a hangup while a synthesis thread is
            # stuck on a starved CPU): what the caller heard is still the call's record.
            report = self.ctx.playout.report_now(seg[0]) if seg and self.heard is None else None
            if report is not None:  # recorded without waiting: a cancelled task must not block
                self.ctx.record.turn_now("agent", self._heard(reply, seg[0], report), self.timing,
                                         **self._cut(reply, report))
            raise

    async def _stream_into(self, messages: list[Message], commit: Callable[[], Coroutine[Any, Any, None]], reply: SpokenReply,
                           seg: list[int]) -> None:
        ctx, cfg, timing = self.ctx, self.ctx.config, self.timing
        cancel = CancelToken()
        chunker = reply_chunker()
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        committed: asyncio.Task[None] = asyncio.create_task(commit())
        gate = threading.Event()  # set: the LLM may decode
        gate.set()
        tts = asyncio.create_task(self._speak_clauses(clauses, cancel, reply, seg, gate))
        filler = asyncio.create_task(self._filler_after(cfg.filler_after_s, seg, cancel))
        try:
            tokens = ctx.engines.reply_tokens(messages, cancel=cancel, session_key=ctx.call_id, max_tokens=cfg.max_reply_tokens, gate=gate)
            try:
                first = True
                while True:
                    timeout = cfg.first_token_timeout_s if first else cfg.step_timeout_s
                    try:
                        tok = await wait_for(ctx.clock, anext(tokens), timeout)
                    except StopAsyncIteration:
                        break
                    if first:
                        timing.llm_first_token = ctx.clock.now()
                        first = False
                    if self._go.is_set():  # the caller is waiting: the first words go out sooner
                        chunker.hurry(cfg.first_clause_words_waiting)
                    for clause in chunker.push(tok.text):
                        clauses.put_nowait(clause)
                        if ctx.hold_llm and timing.tts_first_audio is None:
                            gate.clear()  # the first clause's TTS gets the CPU; _speak_clauses reopens
            finally:
                await tokens.aclose()
            if not cancel.cancelled:
                for clause in chunker.flush():
                    clauses.put_nowait(clause)
            clauses.put_nowait(None)
            await tts
        finally:
            ctx.live.discard(cancel)
            filler.cancel()
            if not committed.done():
                committed.cancel()
            await stop(tts)
        await committed
        if not seg:  # nothing was spoken (empty reply or cancelled before audio)
            if not cancel.cancelled:
                await self.voice.say(cfg.clarify, role_text="empty reply")
            return
        ctx.playout.flush()
        report = await ctx.playout.wait(seg[0])
        await ctx.record.turn("agent", self._heard(reply, seg[0], report), timing, **self._cut(reply, report))
        ctx.touch()
        ctx.warm()

    def _heard(self, reply: SpokenReply, segment: int, report: PlayoutReport) -> str:
        """The context keeps what the caller heard of the reply (and what a barge-in cut off)."""
        ctx = self.ctx
        self.timing.first_frame = ctx.playout.first_sent_at(segment)
        self.heard = ctx.conversation.add_agent_heard(reply, report.played_ms, report.interrupted)
        self.unheard = reply.unheard_text(report.played_ms) if report.interrupted else ""
        ctx.state.cut_off = self.unheard
        return self.heard

    @staticmethod
    def _cut(reply: SpokenReply, report: PlayoutReport) -> dict[str, Any]:
        return {"interrupted": report.interrupted, "full_text": reply.text if report.interrupted else None}

    async def _speak_clauses(self, clauses: asyncio.Queue[str | None], cancel: CancelToken, reply: SpokenReply, seg: list[int],
                             gate: threading.Event) -> None:
        ctx, timing = self.ctx, self.timing
        try:
            priority = Priority.TURN  # the first clause: the caller is waiting in silence
            while (clause := await clauses.get()) is not None:
                reply.add_clause(clause, 0.0)  # its audio is added as it comes: cut before any, it was not heard
                speech = ctx.engines.speak(clause, ctx.rate, cancel=cancel, priority=priority)
                priority = Priority.NORMAL  # later clauses have the earlier ones' audio as slack
                try:
                    while True:
                        try:
                            chunk = await wait_for(ctx.clock, anext(speech), ctx.config.step_timeout_s)
                        except StopAsyncIteration:
                            break
                        if timing.tts_first_audio is None:
                            timing.tts_first_audio = ctx.clock.now()
                        gate.set()
                        if not self._go.is_set():  # speculative: hold the audio until the endpoint is final
                            await self._go.wait()
                            ctx.live.add(cancel)  # from now on a barge-in must stop this reply
                        if cancel.cancelled:
                            return
                        sid = ctx.playout.capture(chunk.pcm)
                        if not seg:
                            seg.append(sid)
                        reply.add_audio(len(chunk.pcm) / 2 / ctx.rate * 1000)
                finally:
                    await speech.aclose()
        finally:
            gate.set()  # a failed or cancelled first clause never leaves the LLM held

    async def _filler_after(self, delay: float, seg: list[int], cancel: CancelToken) -> None:
        """A slow LLM prefill or tool: say something short rather than leave silence."""
        ctx = self.ctx
        await self._go.wait()
        ctx.live.add(cancel)
        await sleep(ctx.clock, delay)
        if not seg and not cancel.cancelled and not ctx.playout.speaking:
            ctx.record.event("filler")
            await self.voice.say(ctx.config.filler, role_text="filler", record=False, atomic=True)
