"""`python -m devtools`: the Asterisk test bed, the demo call (./dev runs both), the sample backend."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from devtools import testbed, testbed_cli
from devtools.backend import app as backend_app


def _demo(args: argparse.Namespace) -> int:
    from devtools.demo import run_demo

    return asyncio.run(run_demo(as_json=args.json, agent=args.agent, llm=args.llm))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    testbed_cli.add_parser(subparsers)
    demo = subparsers.add_parser("demo", help="place one real SIP call through Asterisk to the agent")
    demo.add_argument("--json", action="store_true", help="print the call report as JSON")
    demo.add_argument("--agent", choices=("dialog", "echo"), default="dialog",
                      help="dialog: the real agent with the bundled models; echo: media-path check")
    demo.add_argument("--llm", default="", help="catalogue name of the LLM, e.g. qwen2.5-coder-0.5b-instruct")
    demo.set_defaults(func=_demo)
    backend_app.add_parser(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except testbed.TestBedError as exc:
        print(f"devtools: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
