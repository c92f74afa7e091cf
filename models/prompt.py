"""How a conversation becomes prompt text for a local model, and the JSON shapes of tool calls.

A `PromptFormat` is append-only and pairs each piece of text with whether it holds control
markers (tokenised with special=True); message content never does, so a caller cannot inject a
turn marker. Tool calls use the model's native form where it has one (Qwen2.5: a
<tool_call>{"name": ..., "arguments": ...}</tool_call> assistant turn and a <tool_response> user
turn); the choice of tool and its arguments are always generated under a grammar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.base import Message, ToolSpec

STRING_MAX = 160  # grammar bound on free strings in tool arguments (a base model may never close one)
ARRAY_MAX = 8
INT_ENUM_MAX = 256  # an integer range this small is written out as its values
REPLY = "reply"  # the choice that means "answer in words, no tool" (LLM.act)


@dataclass(frozen=True)
class PromptFormat:
    """An append-only conversation layout. `parts` pairs each piece of text with whether it holds
    control markers (tokenised with special=True); message content never does, so a caller
    cannot inject a turn marker."""

    name: str  # "chatml", "gemma" or "plain"
    stop: tuple[str, ...]

    @classmethod
    def chatml(cls) -> PromptFormat:
        """Qwen's (and many others') layout: <|im_start|>role ... <|im_end|>."""
        return cls("chatml", ("<|im_end|>", "<|im_start|>", "<|endoftext|>"))

    @classmethod
    def gemma(cls) -> PromptFormat:
        return cls("gemma", ("<end_of_turn>", "<start_of_turn>"))

    @classmethod
    def plain(cls) -> PromptFormat:
        return cls("plain", ("\nUser:", "\nAssistant:"))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], *, source: str = "the GGUF") -> PromptFormat:
        """The GGUF's own chat template decides, never a guess: a template we do not know is an
        error (pass `prompt_format` to choose one explicitly). Without a template, only a
        gemma-architecture vocabulary qualifies (it carries the turn markers; the bundled base
        model is such a file)."""
        template = metadata.get("tokenizer.chat_template")
        if template:
            if "<|im_start|>" in template:
                return cls.chatml()
            if "<start_of_turn>" in template:
                return cls.gemma()
            raise ValueError(f"llm: {source} has a chat template this engine does not know (neither ChatML nor Gemma); "
                             "choose a prompt format explicitly (LlamaLLM(prompt_format=...))")
        if metadata.get("general.architecture", "").startswith("gemma"):
            return cls.gemma()
        raise ValueError(f"llm: {source} has no chat template and is not a gemma model: its prompt layout is unknown; "
                         "choose a prompt format explicitly (LlamaLLM(prompt_format=...))")

    def parts(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> list[tuple[str, bool]]:
        if self.name == "chatml":
            return _chatml_parts(messages, add_generation_prompt)
        if self.name == "gemma":
            return _gemma_parts(messages, add_generation_prompt)
        return _plain_parts(messages, add_generation_prompt)

    def user_opening(self) -> list[tuple[str, bool]]:
        """What every user turn starts with, before its words: `parts` of a conversation plus
        a user message begins with `parts` of the conversation plus this."""
        if self.name == "chatml":
            return [("<|im_start|>user\n", True)]
        if self.name == "gemma":
            return [("<start_of_turn>user\n", True)]
        return [("User:", False)]

    def call_prefix(self) -> list[tuple[str, bool]]:
        """What an assistant turn that calls a tool starts with, up to the tool's name: the
        constrained choice continues from here (after the generation prompt)."""
        opening = [("<tool_call>\n", True)] if self.name == "chatml" else []
        return [*opening, ('{"name": "', False)]

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
        return "".join(text for text, _ in self.parts(messages, add_generation_prompt=add_generation_prompt))


def open_last(parts: Sequence[tuple[str, bool]], content: str) -> list[tuple[str, bool]]:
    """`parts` up to and including the last message's `content`: that message left open, as a
    prompt that goes on with more of its words shares every token before them."""
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == (content, False):
            return list(parts[: i + 1])
    return list(parts)


def call_json(name: str, arguments: Mapping[str, Any]) -> str:
    """A tool call as the model writes it (and as `act` makes it write it)."""
    return json.dumps({"name": name, "arguments": dict(arguments)}, ensure_ascii=False)


def _content(m: Message) -> str:
    if m.tool_call is not None:
        return call_json(m.tool_call.name, m.tool_call.arguments)
    return f"Tool {m.name or 'result'} returned: {m.content}" if m.role == "tool" else m.content


def _chatml_parts(messages: Sequence[Message], gen: bool) -> list[tuple[str, bool]]:
    """ChatML as Qwen2.5's own template writes it; a tool result is a user turn holding a
    <tool_response> (plain text here: only the turn markers are control tokens)."""
    out: list[tuple[str, bool]] = []
    for m in messages:
        if m.role == "tool":
            out += [("<|im_start|>user\n", True), (f"<tool_response>\n{m.content}\n</tool_response>", False), ("<|im_end|>\n", True)]
        elif m.tool_call is not None:  # our own constrained output: its tags may be tokens
            out += [("<|im_start|>assistant\n<tool_call>\n", True), (_content(m), False), ("\n</tool_call><|im_end|>\n", True)]
        else:
            out += [(f"<|im_start|>{m.role}\n", True), (m.content, False), ("<|im_end|>\n", True)]
    if gen:
        out.append(("<|im_start|>assistant\n", True))
    return [p for p in out if p[0]]


def _gemma_parts(messages: Sequence[Message], gen: bool) -> list[tuple[str, bool]]:
    """Gemma's own template: no system role, so the system text opens the first user turn."""
    out: list[tuple[str, bool]] = []
    msgs = list(messages)
    system = ""
    if msgs and msgs[0].role == "system":
        system = msgs.pop(0).content
        if not msgs or msgs[0].role != "user":
            msgs.insert(0, Message("user", ""))
    for i, m in enumerate(msgs):
        text = _content(m)
        if i == 0 and system:
            text = f"{system}\n\n{text}" if text else system
        role = "model" if m.role == "assistant" else "user"
        out += [(f"<start_of_turn>{role}\n", True), (text, False), ("<end_of_turn>\n", True)]
    if gen:
        out.append(("<start_of_turn>model\n", True))
    return [p for p in out if p[0]]


def _plain_parts(messages: Sequence[Message], gen: bool) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for m in messages:
        if m.role == "system":
            out.append((f"{m.content}\n\n", False))
        else:
            label = "Assistant:" if m.role == "assistant" else "User:"
            out += [(label, False), (f" {_content(m)}\n", False)]
    if gen:
        out.append(("Assistant:", False))
    return out


def bounded(schema: Any) -> Any:
    """A copy of a JSON schema with free strings and arrays length-capped, so a constrained base
    model always finishes; anything it produces still validates against the original."""
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (bounded(v) if k in ("items", "oneOf", "anyOf", "allOf", "prefixItems") else v) for k, v in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: bounded(v) for k, v in schema["properties"].items()}
    free = not any(k in schema for k in ("enum", "const", "pattern", "format", "maxLength"))
    if schema.get("type") == "string" and free:
        out["maxLength"] = STRING_MAX
    if schema.get("type") == "array" and "maxItems" not in schema:
        out["maxItems"] = ARRAY_MAX
    if schema.get("type") == "integer" and "enum" not in schema:
        # llama.cpp's converter ignores minimum/maximum (measured: 1500000000000000 for an hour
        # of the day 8..18; it caps integers at 16 digits): a small range becomes the list of
        # its values. Wider ranges are checked against the schema before any request.
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, int) and isinstance(high, int) and 0 <= high - low <= INT_ENUM_MAX:
            out = {"enum": list(range(low, high + 1))}
    return out


def tool_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """oneOf {"name": tool, "arguments": its parameters} or {"name": "none"}."""
    if any(t.name == "none" for t in tools):
        raise ValueError('a tool may not be called "none": that name means "no tool"')
    options: list[dict[str, Any]] = [
        {"type": "object", "properties": {"name": {"const": t.name}, "arguments": bounded(t.parameters)}, "required": ["name", "arguments"]}
        for t in tools
    ]
    options.append({"type": "object", "properties": {"name": {"const": "none"}}, "required": ["name"]})
    return {"oneOf": options}


def tool_instructions(tools: Sequence[ToolSpec]) -> str:
    lines = ["Pick the tool that serves the last request, or none. Tools:"]
    lines += [f"- {t.name}: {t.description} Arguments: {json.dumps(t.parameters)}" for t in tools]
    lines.append('- none: no tool fits.\nAnswer with JSON: {"name": ..., "arguments": {...}}.')
    return "\n".join(lines)


def tools_block(tools: Sequence[ToolSpec]) -> str:
    """The tool list as Qwen2.5's own chat template appends it to the system message (plain
    text, so any model can read it; a model trained on it also knows to answer with
    <tool_call>{"name": ..., "arguments": ...}</tool_call> when a tool fits)."""
    lines = ["# Tools", "", "You may call one or more functions to assist with the user query.", "",
             "You are provided with function signatures within <tools></tools> XML tags:", "<tools>"]
    lines += [json.dumps({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}},
                         ensure_ascii=False) for t in tools]
    lines += ["</tools>", "", "For each function call, return a json object with function name and arguments within "
              "<tool_call></tool_call> XML tags:", "<tool_call>", '{"name": <function-name>, "arguments": <args-json-object>}', "</tool_call>"]
    return "\n".join(lines)
