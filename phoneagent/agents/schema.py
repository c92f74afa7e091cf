"""The agent file: one YAML file per agent, validated field by field at start.

Every section is optional except `name` and `instructions`; unknown keys are errors (a typo in
`greting:` must not silently leave the default greeting). `load.py` turns a valid file into the
dialog's `AgentConfig`, the webhooks and the per-call telephony settings.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from phoneagent.dialog.slots import slots_of

_NAME = r"^[a-z][a-z0-9_-]{0,39}$"
_TOOL = r"^[a-z][a-z0-9_]{0,39}$"
BUILTIN_TOOLS = ("transfer_to_human", "end_call", "out_of_scope")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prompts(_Strict):
    """What the agent says in fixed situations (the dialog's defaults where not set)."""

    greeting: str | None = None
    greeting_known: str | None = Field(None, description="after a caller lookup found them; fields from its result, e.g. {name}")
    reprompt: str | None = None
    goodbye_no_input: str | None = None
    goodbye: str | None = None
    clarify: str | None = None
    busy: str | None = None
    fallback: str | None = None
    filler: str | None = None
    out_of_scope: str | None = None
    tool_failed: str | None = None
    ask_for: str | None = Field(None, description="default 'ask' of tools; {what} names the missing arguments")
    refuse_instructions: str | None = None
    transfer_notice: str | None = None
    transfer_unavailable: str | None = None
    transfer_failed: str | None = None
    read_back: str | None = Field(None, description="a captured number or email said back to be checked: {value} (and {what})")
    slot_again: str | None = Field(None, description="after a no to a read-back: {what}, {or_keypad}")
    slot_unclear: str | None = Field(None, description="the value asked for was not heard whole: {what}, {or_keypad}")
    slot_spell: str | None = Field(None, description="an email after a no or not heard whole: asks to spell it; {what}")
    or_keypad: str | None = Field(None, description="offered for digits: ', or type it on your keypad and press hash'")
    slot_give_up: str | None = Field(None, description="after too many tries, where no person can take over: {what}")
    slot_go_on: str | None = Field(None, description="the caller paused part-way through a number (default 'Mm-hm.')")

    @field_validator("read_back")
    @classmethod
    def _read_back_has_value(cls, v: str | None) -> str | None:
        if v is not None and "{value}" not in v:
            raise ValueError("must contain {value}, the number or email as read back")
        return v

    @field_validator("read_back", "slot_again", "slot_unclear", "slot_spell", "slot_give_up")
    @classmethod
    def _known_fields(cls, v: str | None) -> str | None:
        """Filled in mid-call: a field it does not have must fail here, not on a live call."""
        if v is not None:
            try:
                v.format(value="", what="", or_keypad="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"may use only {{value}}, {{what}} and {{or_keypad}}: {exc!r}") from None
        return v


class TurnTaking(_Strict):
    min_delay_s: float | None = Field(None, ge=0.1, le=3.0, description="silence that ends a turn that sounds complete")
    max_delay_s: float | None = Field(None, ge=0.1, le=5.0)
    barge_in_min_s: float | None = Field(None, gt=0.0, le=2.0)
    backchannel_max_s: float | None = Field(None, gt=0.0, le=3.0, description="longer speech over the agent interrupts "
                                            "whatever its words; up to it, acknowledgements let the agent carry on")
    backchannels: list[str] = Field(default_factory=list, description="acknowledgements beyond the language's own")
    end_of_turn_model: bool | None = Field(None, description="ask the end-of-turn model at each pause (off by default)")
    unfinished_words: bool | None = Field(None, description="words that stop mid-sentence at a pause (\"I want to\") hold the "
                                          "turn open up to max_delay_s (on by default)")
    complete_above: float | None = Field(None, ge=0.0, le=1.0, description="model P(complete) that ends a turn after complete_delay_s")
    incomplete_below: float | None = Field(None, ge=0.0, le=1.0, description="model P(complete) that waits max_delay_s")
    complete_delay_s: float | None = Field(None, ge=0.0, le=3.0)
    pause_on_onset: bool | None = None
    first_clause_words_waiting: int | None = Field(None, ge=2, le=6, description="once the caller is waiting, the reply's first "
                                                   "clause is cut at a word from this many words (6: only at its punctuation or 6 words)")
    words_ahead_s: float | None = Field(None, ge=0.0, le=10.0, description="while the caller speaks, their words so far are "
                                        "transcribed and evaluated into the LLM cache every this many seconds (CPU LLMs; 0: off)")
    no_input_s: float | None = Field(None, ge=2.0, le=120.0)
    max_reprompts: int | None = Field(None, ge=0, le=5)


class Keypad(_Strict):
    terminator: str | None = "#"
    inter_digit_timeout_s: float = Field(3.0, gt=0, le=30)
    max_digits: int = Field(20, ge=1, le=64)
    escape: str | None = "0"


class AnswerSpec(_Strict):
    """A spoken answer template, or one per value of a result field."""

    when: str = ""
    cases: dict[str, str] = Field(default_factory=dict)
    otherwise: str = ""

    @model_validator(mode="after")
    def _cases_need_when(self) -> AnswerSpec:
        if bool(self.when) != bool(self.cases):
            raise ValueError("'when' (a result field) and 'cases' (value -> template) go together")
        return self


class Tool(_Strict):
    """An HTTP JSON webhook the agent may call. `url` takes {argument} fields; header values take
    ${ENV_VAR} secrets, read from the service's environment (never written in the file)."""

    name: str = Field(pattern=_TOOL)
    description: str = Field(min_length=3, max_length=400)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(2.0, gt=0, le=30)
    retries: int = Field(0, ge=0, le=5)
    cache_ttl_s: float = Field(0.0, ge=0)
    filler: str = Field("Let me check that.", description="said as soon as the tool is chosen; '' for none")
    answer: str | AnswerSpec | None = Field(None, description="spoken verbatim, filled from the result; none: the LLM phrases it")
    not_found: str | None = Field(None, description="said when the system answers 404; fields from the arguments")
    failed: str | None = Field(None, description="said when the system cannot be reached; default prompts.tool_failed")
    ask: str | None = Field(None, description="said when the caller has not given the arguments yet")

    @field_validator("name")
    @classmethod
    def _not_builtin(cls, v: str) -> str:
        if v in (*BUILTIN_TOOLS, "reply"):
            raise ValueError(f"{v!r} is a built-in action name; choose another")
        return v

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object":
            raise ValueError("must be a JSON schema with type: object")
        slots_of(v)  # an unknown x-slot kind or an impossible length is an error here, not mid-call
        return v


class CallerLookup(_Strict):
    """Before the greeting: call `tool` with the caller's number, so a known caller is greeted by
    name and the agent knows their account. `argument` is the tool parameter that takes it."""

    tool: str = Field(pattern=_TOOL)
    argument: str = "phone"
    found_field: str = Field("found", description="a result field that is false when the caller is unknown")


class Transfer(_Strict):
    mode: Literal["warm", "blind"] = "warm"
    endpoint: str = Field("", description="warm: the dial string of the person or queue, e.g. PJSIP/200")
    context: str = ""
    extension: str = ""
    ring_timeout_s: int = Field(20, ge=1, le=120)

    @model_validator(mode="after")
    def _target(self) -> Transfer:
        if self.mode == "warm" and not self.endpoint and (self.context or self.extension):
            raise ValueError("warm transfer uses 'endpoint'; 'context'/'extension' are for mode: blind")
        if self.mode == "blind" and not (self.context and self.extension):
            raise ValueError("blind transfer needs both 'context' and 'extension'")
        return self


class Escalation(_Strict):
    """When the agent hands the caller to a person (if a transfer target exists)."""

    on_request: bool = True
    max_failures: int = Field(2, ge=1, le=10, description="tool failures or not-understood turns in a call")
    repeated_question: bool = True
    frustration: list[str] = Field(default_factory=lambda: ["this is ridiculous", "useless", "waste of time", "fed up"])


class Recording(_Strict):
    enabled: bool = False
    notice: str = Field("This call is recorded.", description="spoken before the greeting when recording")


class Capture(_Strict):
    """Numbers, emails, dates and amounts a tool needs (tool parameters with x-slot): asked for, read back,
    confirmed or repaired before the tool runs."""

    hypotheses: int = Field(5, ge=1, le=10, description="recogniser texts searched for a value of the slot's length")
    max_rounds: int = Field(4, ge=1, le=10, description="read-backs and retries for one value, then a person or slot_give_up")


class CallerMemory(_Strict):
    """Opt-in: the agent gets this caller's last calls (outcome, what they asked, what the tools
    found, a transfer's summary) from the call records at call start."""

    calls: int = Field(3, ge=1, le=10)
    within_days: float = Field(30.0, gt=0, le=3650)


class Outbound(_Strict):
    greeting: str | None = None
    amd: bool = True
    voicemail_message: str | None = None


class Engines(_Strict):
    """Catalogue names; where not set, the service config's."""

    llm: str | None = None
    stt: str | None = None
    voice: str | None = None


class AgentFile(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = ""
    language: str = Field("en", pattern=r"^[a-z]{2}$")
    instructions: str = Field(min_length=10, max_length=4000, description="persona, task and rules, in plain words")
    engines: Engines = Engines()
    prompts: Prompts = Prompts()
    turn_taking: TurnTaking = TurnTaking()
    keypad: Keypad = Keypad()
    capture: Capture = Capture()
    allowed_hosts: list[str] = Field(default_factory=list, description="host or host:port the tools may reach")
    tools: list[Tool] = Field(default_factory=list)
    caller_lookup: CallerLookup | None = None
    caller_memory: CallerMemory | None = None
    out_of_scope: bool = Field(True, description="offer the LLM an explicit out-of-scope choice (then prompts.out_of_scope)")
    transfer: Transfer | None = None
    escalation: Escalation = Escalation()
    recording: Recording = Recording()
    outbound: Outbound = Outbound()
    audiosocket_port: int | None = Field(None, ge=1024, le=65535, description="direct AudioSocket path: this agent's own port")

    @model_validator(mode="after")
    def _consistent(self) -> AgentFile:
        names = [t.name for t in self.tools]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"tool names must be unique: {sorted(dup)}")
        if self.caller_lookup is not None:
            tool = next((t for t in self.tools if t.name == self.caller_lookup.tool), None)
            if tool is None:
                raise ValueError(f"caller_lookup.tool {self.caller_lookup.tool!r} is not one of tools {names}")
            if self.caller_lookup.argument not in (tool.parameters.get("properties") or {}):
                raise ValueError(f"caller_lookup.argument {self.caller_lookup.argument!r} is not a parameter of tool {tool.name!r}")
        for host in self.allowed_hosts:
            if not re.match(r"^[A-Za-z0-9.-]+(:\d{1,5})?$", host):
                raise ValueError(f"allowed_hosts entry {host!r}: write host or host:port, no scheme or path")
        return self
