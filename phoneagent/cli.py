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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ari_app.client import AriConfig
    from models.engines import EngineConfig


def _ari_config(args: argparse.Namespace) -> AriConfig:
    from ari_app.client import AriConfig

    user, password = os.environ.get("PHONEAGENT_ARI_USER", ""), os.environ.get("PHONEAGENT_ARI_PASSWORD", "")
    if not (user and password):
        raise UsageError("ARI needs PHONEAGENT_ARI_USER and PHONEAGENT_ARI_PASSWORD in the environment")
    return AriConfig(url=args.ari_url, user=user, password=password, app=args.ari_app)


def _engine_config(args: argparse.Namespace) -> EngineConfig:
    from models.engines import EngineConfig

    return EngineConfig(llm=args.llm) if args.llm else EngineConfig()


def _preflight_or_refuse(args: argparse.Namespace) -> int:
    """Before any call is taken: each engine's tiny real run in a subprocess (models.preflight).
    A native library that dies on this CPU stops the start here, not a call later."""
    from models import preflight

    if args.agent != "dialog" or args.skip_preflight:
        return 0
    try:
        results = preflight.ensure(preflight.checks_for(_engine_config(args)))
    except preflight.PreflightError as exc:
        print(f"phoneagent: refusing to start: {exc}", file=sys.stderr)
        return 3
    logging.getLogger("phoneagent").info("preflight ok: %s", ", ".join(f"{r.engine} {r.seconds:.1f} s" for r in results))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from phoneagent.service import serve

    ari = _ari_config(args) if args.ari else None
    refused = _preflight_or_refuse(args)
    if refused:
        return refused
    asyncio.run(serve(args.host, args.port, agent=args.agent, db_url=args.db, ari=ari, engine_config=_engine_config(args)))
    return 0


def _dial(args: argparse.Namespace) -> int:
    from ari_app.outbound import OutboundConfig
    from phoneagent.service import dial

    outbound = OutboundConfig(endpoint=args.endpoint, caller_id=args.caller_id, max_concurrent=args.max_concurrent,
                              min_interval_s=args.interval, ring_timeout_s=args.ring_timeout)
    refused = _preflight_or_refuse(args)
    if refused:
        return refused
    results = asyncio.run(dial(args.host, args.port, args.numbers, outbound, agent=args.agent, db_url=args.db,
                               ari=_ari_config(args), engine_config=_engine_config(args)))
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
    p.add_argument("--host", default=AUDIOSOCKET_HOST, help="where the AudioSocket server listens")
    p.add_argument("--port", type=int, default=AUDIOSOCKET_PORT)
    p.add_argument("--agent", choices=("dialog", "echo"), default="dialog", help="dialog: the agent with local models; echo: media-path check")
    p.add_argument("--db", default="sqlite:///phoneagent.db", help="SQLAlchemy URL for call records (PostgreSQL works too)")
    p.add_argument("--ari-url", default=ARI_URL, help="Asterisk's HTTP/ARI base URL")
    p.add_argument("--ari-app", default=ARI_APP, help="the Stasis application name")
    p.add_argument("--skip-preflight", action="store_true", help="do not test-run each engine in a subprocess first (not advised)")
    _llm_option(p)


def _preflight(args: argparse.Namespace) -> int:
    from models import preflight

    return preflight.report(preflight.checks_for(_engine_config(args), device=args.device), as_json=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phoneagent")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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

    dialp = subparsers.add_parser("dial", help="place outbound calls through ARI (answering-machine detection), wait for them to end")
    _common(dialp)
    dialp.add_argument("numbers", nargs="+", help="numbers (or extensions) substituted into --endpoint")
    dialp.add_argument("--endpoint", required=True, help="dial string template, e.g. 'PJSIP/{number}@my-trunk'")
    dialp.add_argument("--caller-id", default="", help="caller ID to present")
    dialp.add_argument("--max-concurrent", type=int, default=4)
    dialp.add_argument("--interval", type=float, default=1.0, help="seconds between two call attempts")
    dialp.add_argument("--ring-timeout", type=int, default=30)
    dialp.add_argument("--json", action="store_true", help="print the results as JSON")
    dialp.set_defaults(func=_dial)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (UsageError, ValueError) as exc:  # bad input: a clear message, not a traceback
        print(f"phoneagent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
