"""`python -m devtools asterisk ...`: build, start, stop and inspect the Asterisk test bed."""

from __future__ import annotations

import argparse
import json
import time

from devtools import testbed


def _build(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    root = testbed.ensure_built(force=args.force)
    where = "host Asterisk" if root is None else str(root)
    print(f"built: {where} ({time.monotonic() - t0:.1f} s)")
    return 0


def _ensure(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    bed = testbed.ensure(timeout=args.timeout)
    print(f"Asterisk ready in {time.monotonic() - t0:.1f} s: ARI {bed.ari_url}, "
          f"SIP {bed.sip_host}:{bed.sip_port}")
    return 0


def _start(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    testbed.start(timeout=args.timeout)
    print(f"Asterisk running and healthy ({time.monotonic() - t0:.1f} s)")
    return 0


def _stop(args: argparse.Namespace) -> int:
    testbed.stop()
    print("Asterisk stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    bed = testbed.load_bed()
    running = bed.is_running()
    info = {
        "mode": "host" if bed.root is None else "chroot",
        "root": str(bed.root) if bed.root else None,
        "built": bed.root is None or (bed.root / testbed.MARKER).is_file(),
        "disk_mb": testbed.disk_usage_mb(bed.root) if bed.root and bed.root.is_dir() else None,
        "running": running,
        "ari_url": bed.ari_url,
        "ari_user": bed.ari_user,
        "ari_app": bed.ari_app,
        "sip": f"{bed.sip_host}:{bed.sip_port}",
        "audiosocket": bed.audiosocket_addr,
        "log": str(bed.log_file()),
    }
    print(json.dumps(info, indent=2))
    return 0 if running else 1


def _health(args: argparse.Namespace) -> int:
    report = testbed.load_bed().health()
    print(f"version: {report.version or '-'}\nARI: {'ok' if report.ari_ok else 'FAIL'}")
    for name, up in report.audiosocket_modules.items():
        print(f"{name}: {'Running' if up else 'NOT running'}")
    for problem in report.problems:
        print(f"problem: {problem}")
    print("OK" if report.ok else "UNHEALTHY")
    return 0 if report.ok else 1


def _rx(args: argparse.Namespace) -> int:
    print(testbed.load_bed().rx(args.command, timeout=args.timeout), end="")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `asterisk` and its sub-commands on the main CLI's subparsers."""
    p = subparsers.add_parser("asterisk", help="the Asterisk 22 test bed (Debian sid chroot)")
    sub = p.add_subparsers(dest="asterisk_command", required=True)
    b = sub.add_parser("build", help="build the chroot if missing or broken")
    b.add_argument("--force", action="store_true", help="rebuild even if it looks fine")
    b.set_defaults(func=_build)
    for name, func, text in (("ensure", _ensure, "build if needed, start, wait until healthy"),
                             ("start", _start, "start the built bed (reuses a healthy one)")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--timeout", type=float, default=60, help="seconds to become healthy")
        s.set_defaults(func=func)
    sub.add_parser("stop", help="stop Asterisk").set_defaults(func=_stop)
    sub.add_parser("status", help="where it is, whether it runs").set_defaults(func=_status)
    sub.add_parser("health", help="version, ARI, AudioSocket modules").set_defaults(func=_health)
    r = sub.add_parser("rx", help="run one Asterisk CLI command")
    r.add_argument("command", help='e.g. "core show channels"')
    r.add_argument("--timeout", type=float, default=10)
    r.set_defaults(func=_rx)
