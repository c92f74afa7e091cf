"""`python -m devtools`: the Asterisk test bed, the demo call (./dev runs both), the sample backend."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from collections.abc import Sequence

from devtools import kamailio, target, testbed, testbed_cli
from devtools.backend import app as backend_app


def _demo(args: argparse.Namespace) -> int:
    from devtools.demo import run_demo

    return asyncio.run(run_demo(as_json=args.json, agent=args.agent, llm=args.llm))


def _bundle(args: argparse.Namespace) -> int:
    from devtools import bundle

    try:
        info = bundle.build(Path(args.out), Path(args.llama_wheel), args.models.split(",") if args.models else bundle.DEFAULT_MODELS,
                            releases=args.releases.split(","))
    except bundle.BundleError as exc:
        print(f"devtools: {exc}", file=sys.stderr)
        return 1
    releases = ", ".join(f"{p['name']} (Python {p['python']})" for p in info["platforms"].values())  # type: ignore[attr-defined]
    print(f"bundle {args.out}: phoneagent {info['project_version']} for {releases} on {info['machine']}; "
          f"models: {', '.join(info['models'])}")  # type: ignore[arg-type]
    return 0


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
    bundle = subparsers.add_parser("bundle", help="build the offline bundle (wheels, model files, checksums) for ansible/")
    bundle.add_argument("out", help="directory to write (made or refreshed)")
    bundle.add_argument("--llama-wheel", required=True, help="the llama-cpp-python wheel to ship (./dev bundle passes its build)")
    bundle.add_argument("--models", default="", help="comma-separated catalogue names (default: the bundled set)")
    bundle.add_argument("--releases", default="bookworm",
                        help="comma-separated target releases: bookworm (Debian 12, this machine's), noble (Ubuntu 24.04; needs root)")
    bundle.set_defaults(func=_bundle)
    tgt = subparsers.add_parser("target", help="build the fresh root the ansible converge tests copy (needs the release's mirror)")
    tgt.add_argument("--force", action="store_true", help="rebuild even if a good one is cached")
    tgt.add_argument("--suite", choices=sorted(target.RELEASES), default="bookworm", help="bookworm: Debian 12; noble: Ubuntu 24.04")
    tgt.set_defaults(func=lambda a: print(target.ensure_base(force=a.force, suite=a.suite)) or 0)
    kam = subparsers.add_parser("kamailio", help="build the Kamailio root the multi-host tests run (needs the mirror)")
    kam.add_argument("--force", action="store_true", help="rebuild even if a good one is cached")
    kam.set_defaults(func=lambda a: print(kamailio.ensure_built(force=a.force)) or 0)
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
