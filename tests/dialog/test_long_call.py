"""A long call never outgrows the LLM's context: the dialog's conversation budget is the real
model's context minus a reply, counted by its own tokeniser (the old 12,000-character budget
was larger than n_ctx=2048, so a long call ended in "Sorry, I'm having technical trouble")."""

from __future__ import annotations

from models.base import CancelToken, Message
from models.engines import EngineConfig, Engines
from phoneagent.dialog.context import SpokenReply
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog

CALLER = [
    "Hi, I'm calling about my electricity bill for last month, it looks much higher than usual.",
    "My account number is four seven one one, and the postcode is S W one A one A A.",
    "Can you tell me when the meter was last read, and whether it was an estimate?",
    "I was away for three weeks in August, so the usage seems wrong to me.",
]


async def test_forty_turns_through_the_real_llm_never_overflow_its_context() -> None:
    engines = Engines.load(EngineConfig(llm_pool=1))
    try:
        config = AgentConfig(max_reply_tokens=32)
        dialog = CallDialog(engines, config)  # the conversation exactly as a call builds it
        conv = dialog.conversation
        assert conv.budget == engines.context_tokens - 32 == 2048 - 32
        largest = 0
        for turn in range(40):
            said = f"{CALLER[turn % len(CALLER)]} Sorry to go on about it, this is the {turn + 1}th thing I wanted to ask you today."
            messages = conv.messages(config.system_prompt, pending_user=said)
            prompt = engines.count_tokens(messages)
            assert prompt <= conv.budget, f"turn {turn + 1}: prompt of {prompt} tokens over budget {conv.budget}"
            largest = max(largest, prompt)
            text = ""
            async for tok in engines.reply_tokens(messages, cancel=CancelToken(), session_key="long-call",
                                                  max_tokens=config.max_reply_tokens):
                text += tok.text
            conv.add_user(said)
            reply = SpokenReply()
            reply.add_clause(text.strip() or "Okay.", 1000.0)
            conv.add_agent_heard(reply, 1000.0, interrupted=False)
        whole = engines.count_tokens([Message("system", config.system_prompt), *conv.history])
        assert whole > engines.context_tokens, f"the call should have needed trimming ({whole} tokens in all)"
        assert largest > conv.budget * conv.trim_to, "the prompt should have grown close to the budget"
        assert len(conv.history) >= 80 and conv.history[0].content.startswith("Hi, I'm calling")  # nothing lost from the record
    finally:
        await engines.close()
