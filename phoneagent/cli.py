"""The `phoneagent` command: one entry point, one sub-command per area."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ari_app.client import AriConfig
    from models.engines import EngineConfig
    from phoneagent.agents.load import Agent
    from phoneagent.settings import ServiceConfig


def _settings(args: argparse.Namespace) -> ServiceConfig:
    """The service config file (if any) with the command line's explicit options on top."""
    from phoneagent.settings import ServiceConfig, load_settings

    cfg = load_settings(Path(args.config)) if getattr(args, "config", None) else ServiceConfig()
    over = {k: getattr(args, k, None) for k in ("host", "port", "db", "db_spool", "advertise", "default_agent", "http_port", "max_calls")}
    if getattr(args, "agents", None):
        over["agents"] = Path(args.agents)
    cfg = cfg.model_copy(update={k: v for k, v in over.items() if v is not None})
    ari = {k: v for k, v in (("url", getattr(args, "ari_url", None)), ("app", getattr(args, "ari_app", None))) if v}
    return cfg.model_copy(update={"ari": cfg.ari.model_copy(update=ari)}) if ari else cfg


def _ari_config(cfg: ServiceConfig) -> list[AriConfig]:
    """One AriConfig per Asterisk the service takes calls from (ari.url, then ari.servers)."""
    from ari_app.client import AriConfig

    from phoneagent import credentials

    try:
        user, password = credentials.read("PHONEAGENT_ARI_USER"), credentials.read("PHONEAGENT_ARI_PASSWORD")
        if not (user and password):
            raise UsageError("ARI needs PHONEAGENT_ARI_USER and PHONEAGENT_ARI_PASSWORD in the environment (or *_FILE)")
        credentials.check("PHONEAGENT_ARI_PASSWORD", password, where=cfg.ari.url)
    except credentials.SecretError as exc:
        raise UsageError(str(exc)) from None
    if cfg.host in ("0.0.0.0", "::") and not cfg.advertise:
        raise UsageError(f"listening on {cfg.host}: set advertise (host:port Asterisk connects back to) in the config or --advertise")
    return [AriConfig(url=url.rstrip("/"), user=user, password=password, app=cfg.ari.app)
            for url in dict.fromkeys([cfg.ari.url, *cfg.ari.servers])]


def _engine_config(args: argparse.Namespace, cfg: ServiceConfig | None = None) -> EngineConfig:
    from models.engines import EngineConfig

    base = cfg.engines.apply(EngineConfig()) if cfg is not None else EngineConfig()
    return replace(base, llm=args.llm) if args.llm else base


def _agents(cfg: ServiceConfig) -> dict[str, Agent] | None:
    """The agent files (None: the built-in default agent). Bad files stop the start here."""
    from phoneagent.agents.load import AgentFileError, load_agents

    if cfg.agents is None:
        if cfg.default_agent:
            raise UsageError(f"default agent {cfg.default_agent!r} given but no agent files (--agents DIR)")
        return None
    try:
        agents = load_agents(cfg.agents)
    except AgentFileError as exc:
        raise UsageError(f"agent files:\n{exc}") from None
    if cfg.default_agent and cfg.default_agent not in agents:
        raise UsageError(f"default agent {cfg.default_agent!r} is not one of {', '.join(sorted(agents))}")
    return agents


def _preflight_or_refuse(args: argparse.Namespace, engines: EngineConfig) -> int:
    """Before any call is taken: each engine's tiny real run in a subprocess (models.preflight).
    A native library that dies on this CPU stops the start here, not a call later."""
    from models import preflight

    if args.agent != "dialog" or args.skip_preflight:
        return 0
    try:
        results = preflight.ensure(preflight.checks_for(engines))
    except preflight.PreflightError as exc:
        print(f"phoneagent: refusing to start: {exc}", file=sys.stderr)
        return 3
    logging.getLogger("phoneagent").info("preflight ok: %s", ", ".join(f"{r.engine} {r.seconds:.1f} s" for r in results))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from phoneagent.service import serve

    cfg = _settings(args)
    ari = _ari_config(cfg) if args.ari else None
    agents = _agents(cfg)
    engines = _engine_config(args, cfg)
    http = (cfg.http_host, cfg.http_port) if cfg.http_port is not None else None
    from phoneagent import credentials

    try:
        console_token = credentials.read("PHONEAGENT_CONSOLE_TOKEN") or cfg.console_token
    except credentials.SecretError as exc:
        raise UsageError(str(exc)) from None
    if console_token and len(console_token) < 16:
        raise UsageError("the console token must be at least 16 characters (e.g. `openssl rand -hex 16`)")
    if console_token and console_token.lower() in credentials.WELL_KNOWN:
        raise UsageError("the console token is a well-known value: use `openssl rand -hex 16`")
    if console_token and http is None:
        raise UsageError("a console token is set but no http_port: the console is served on http_port (--http-port)")
    refused = _preflight_or_refuse(args, engines)
    if refused:
        return refused
    asyncio.run(serve(cfg.host, cfg.port, agent=args.agent, db_url=cfg.db, db_spool=cfg.db_spool, ari=ari, engine_config=engines, agents=agents,
                      default_agent=cfg.default_agent, advertise=cfg.advertise, http=http, console_token=console_token,
                      max_calls=cfg.max_calls, busy_message=cfg.busy_message, overflow=cfg.overflow, instance=cfg.instance,
                      host_timeout_s=cfg.host_timeout_s))
    return 0


def _check(args: argparse.Namespace) -> int:
    """Validate the service config and its agent files without starting anything (deployment
    tools run this on a new config before it replaces the old one)."""
    cfg = _settings(args)
    agents = _agents(cfg)
    names = ", ".join(sorted(agents)) if agents else "the built-in default agent"
    print(f"ok: {args.config or 'defaults'}: AudioSocket on {cfg.host}:{cfg.port}, agents: {names}")
    return 0


def _dial(args: argparse.Namespace) -> int:
    from ari_app.outbound import OutboundConfig
    from phoneagent.service import dial

    cfg = _settings(args)
    agents = _agents(cfg)
    if args.dial_agent and args.dial_agent not in (agents or {}):
        raise UsageError(f"--as {args.dial_agent!r} is not one of the agents: {', '.join(sorted(agents or {})) or 'none (--agents DIR)'}")
    outbound = OutboundConfig(endpoint=args.endpoint, caller_id=args.caller_id, max_concurrent=args.max_concurrent,
                              min_interval_s=args.interval, ring_timeout_s=args.ring_timeout, agent=args.dial_agent or "")
    engines = _engine_config(args, cfg)
    refused = _preflight_or_refuse(args, engines)
    if refused:
        return refused
    results = asyncio.run(dial(cfg.host, cfg.port, args.numbers, outbound, agent=args.agent, db_url=cfg.db, db_spool=cfg.db_spool,
                               ari=_ari_config(cfg), engine_config=engines, agents=agents, default_agent=cfg.default_agent,
                               advertise=cfg.advertise, instance=cfg.instance))
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.number:20} {r.outcome:12} {r.call_id} {r.detail}")
    return 0


# What the shipped asterisk/ configs expect (extensions.conf, http.conf, ari.conf).
AUDIOSOCKET_HOST, AUDIOSOCKET_PORT = "127.0.0.1", 9092
ARI_URL, ARI_APP = "http://127.0.0.1:8088", "phoneagent"


def _llm_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm", default="", help="catalogue name of the LLM (default: EngineConfig's; e.g. qwen2.5-coder-0.5b-instruct)")


class UsageError(Exception):
    """Bad command-line input: exit 2 with the message."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="service config file (YAML): listen address, advertise, db, agents, engines")
    p.add_argument("--agents", help="directory of agent files (*.yaml), one per agent")
    p.add_argument("--default-agent", help="the agent for calls that name none (default: the first file's)")
    p.add_argument("--host", help=f"where the AudioSocket server listens (default {AUDIOSOCKET_HOST})")
    p.add_argument("--port", type=int, help=f"(default {AUDIOSOCKET_PORT})")
    p.add_argument("--advertise", help="host:port Asterisk connects back to, when --host is 0.0.0.0")
    p.add_argument("--agent", choices=("dialog", "echo"), default="dialog", help="dialog: the agent with local models; echo: media-path check")
    p.add_argument("--db", help="SQLAlchemy URL for call records (default sqlite:///phoneagent.db; PostgreSQL works too)")
    p.add_argument("--max-calls", type=int, help="calls served at once; the next hears the busy message (default: no limit)")
    p.add_argument("--db-spool", type=Path, help="file where call-log writes wait while the database is down (default ./phoneagent-spool.jsonl)")
    p.add_argument("--http-port", type=int, help="serve Prometheus /metrics and /healthz on this port (loopback unless http_host in the config)")
    p.add_argument("--ari-url", help=f"Asterisk's HTTP/ARI base URL (default {ARI_URL})")
    p.add_argument("--ari-app", help=f"the Stasis application name (default {ARI_APP})")
    p.add_argument("--skip-preflight", action="store_true", help="do not test-run each engine in a subprocess first (not advised)")
    _llm_option(p)


def _preflight(args: argparse.Namespace) -> int:
    from models import preflight

    return preflight.report(preflight.checks_for(_engine_config(args), device=args.device), as_json=args.json)


def _calls(args: argparse.Namespace) -> int:
    from phoneagent import records

    return records.run(args, _settings(args).db)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phoneagent")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-json", action="store_true", help="log one JSON object per line, with the call id where there is one")
    subparsers = parser.add_subparsers(dest="command", required=True)

    serve = subparsers.add_parser("serve", help="run the agent's AudioSocket service until Ctrl-C")
    _common(serve)
    serve.add_argument("--ari", action="store_true", help="also run the ARI controller (callers sent to Stasis(phoneagent))")
    serve.set_defaults(func=_serve)

    pre = subparsers.add_parser("preflight", help="test-run each engine once in a subprocess; exit 3 if one cannot run on this machine")
    pre.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    pre.add_argument("--json", action="store_true", help="print the results as JSON")
    _llm_option(pre)
    pre.set_defaults(func=_preflight)

    check = subparsers.add_parser("check", help="validate a service config and its agent files, start nothing; exit 2 on an error")
    check.add_argument("--config", help="service config file (YAML)")
    check.add_argument("--agents", help="directory of agent files (*.yaml)")
    check.set_defaults(func=_check)

    dialp = subparsers.add_parser("dial", help="place outbound calls through ARI (answering-machine detection), wait for them to end")
    _common(dialp)
    dialp.add_argument("numbers", nargs="+", help="numbers (or extensions) substituted into --endpoint")
    dialp.add_argument("--endpoint", required=True, help="dial string template, e.g. 'PJSIP/{number}@my-trunk'")
    dialp.add_argument("--caller-id", default="", help="caller ID to present")
    dialp.add_argument("--max-concurrent", type=int, default=4)
    dialp.add_argument("--interval", type=float, default=1.0, help="seconds between two call attempts")
    dialp.add_argument("--ring-timeout", type=int, default=30)
    dialp.add_argument("--as", dest="dial_agent", default="", help="the agent file's agent that talks (its outbound greeting, AMD, voicemail)")
    dialp.add_argument("--json", action="store_true", help="print the results as JSON")
    dialp.set_defaults(func=_dial)

    from phoneagent import records

    records.add_parser(subparsers).set_defaults(func=_calls)

    args = parser.parse_args(argv)
    from phoneagent import logs

    logs.configure(verbose=args.verbose, as_json=args.log_json)
    try:
        return int(args.func(args))
    except (UsageError, ValueError) as exc:  # bad input (incl. config files): a clear message, not a traceback
        print(f"phoneagent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
