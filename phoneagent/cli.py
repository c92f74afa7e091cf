"""The `phoneagent` command: one entry point, one sub-command per area."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from phoneagent import testbed, testbed_cli


def _serve(args: argparse.Namespace) -> int:
    from phoneagent.service import serve

    asyncio.run(serve(args.host, args.port, agent=args.agent, db_url=args.db))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from phoneagent.demo import run_demo

    return asyncio.run(run_demo(as_json=args.json, agent=args.agent))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phoneagent")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    testbed_cli.add_parser(subparsers)

    serve = subparsers.add_parser("serve", help="run the agent's AudioSocket service until Ctrl-C")
    serve.add_argument("--host", default=testbed.AUDIOSOCKET_HOST)
    serve.add_argument("--port", type=int, default=testbed.AUDIOSOCKET_PORT)
    serve.add_argument("--agent", choices=("dialog", "echo"), default="dialog", help="dialog: the agent with local models; echo: media-path check")
    serve.add_argument("--db", default="sqlite:///phoneagent.db", help="SQLAlchemy URL for call records (PostgreSQL works too)")
    serve.set_defaults(func=_serve)

    demo = subparsers.add_parser("demo", help="place one real SIP call through Asterisk to the agent")
    demo.add_argument("--json", action="store_true", help="print the call report as JSON")
    demo.add_argument("--agent", choices=("dialog", "echo"), default="dialog", help="dialog: the real agent with the bundled models; echo: media-path check")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except testbed.TestBedError as exc:
        print(f"phoneagent: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
