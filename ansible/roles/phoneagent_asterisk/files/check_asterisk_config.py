"""Validate a staged Asterisk config directory with Asterisk itself, before it replaces the live one.

Asterisk has no "check the config" switch, so this starts a throwaway instance of the installed
Asterisk on the staged files, inside a private network namespace (run it under `unshare --net`:
its SIP and HTTP ports never meet the live instance's), asks it what it loaded, and stops it.
Problems: it does not boot; a config file fails to parse; the agent's dialplan, the SIP
transport, peers and trunk registrations, the ARI user, HTTP or the AudioSocket modules are missing. One line per
problem on stdout, exit status 1; "ok: <version>" and 0 when the set is good.

Runs with the host's python3 and no third-party modules (ansible needs nothing else on a host).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
# Log lines that are problems: a warning or error naming one of the staged files, or from the
# config parser, the dialplan loader, the HTTP bind or hold music. Optional files we do not ship
# (cel.conf, acl.conf, ...) are missing by design.
LOGGED = re.compile(r"(WARNING|ERROR)\[\d+\]")
SOURCES = re.compile(r"\b(config|pbx_config|config_options|tcptls|http|res_musiconhold)\.c:")
OPTIONAL = re.compile(r"Unable to load config file|Could not find valid .* file")


def is_problem(line: str, managed: set[str]) -> bool:
    if not LOGGED.search(line) or OPTIONAL.search(line):
        return False
    return bool(SOURCES.search(line)) or any(name in line for name in managed)


def _loopback_up() -> None:
    """A new network namespace has `lo` down; bring it up, and allow binding to the host's
    addresses (which this namespace lacks) so a SIP or HTTP bind to a real IP checks out too."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))
    for knob in ("/proc/sys/net/ipv4/ip_nonlocal_bind", "/proc/sys/net/ipv6/ip_nonlocal_bind"):
        try:
            Path(knob).write_text("1\n")
        except OSError:
            pass


def _check_conf(staged: Path, etc_in_root: str, work_in_root: str) -> str:
    """The staged asterisk.conf with its directories pointed at the staged set and a scratch dir."""
    lines = [ln for ln in staged.joinpath("asterisk.conf").read_text().splitlines()
             if not ln.strip().startswith(("astetcdir", "astrundir", "astlogdir", "astspooldir", "astdbdir", "astcachedir"))]
    # Debian's "[directories](!)" is a template, which Asterisk skips (its built-in paths apply):
    # a plain category makes these paths count.
    lines = ["[directories]" if ln.strip() == "[directories](!)" else ln for ln in lines]
    at = lines.index("[directories]") + 1
    dirs = {"astetcdir": etc_in_root, "astrundir": f"{work_in_root}/run", "astlogdir": f"{work_in_root}/log",
            "astspooldir": f"{work_in_root}/spool", "astdbdir": f"{work_in_root}/lib", "astcachedir": f"{work_in_root}/cache"}
    lines[at:at] = [f"{k} => {v}" for k, v in dirs.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="the Asterisk root (chroot) on this host")
    ap.add_argument("--etc", required=True, help="the staged config directory, as a path inside the root")
    ap.add_argument("--context", default="phoneagent", help="a dialplan context that must load")
    ap.add_argument("--extension", action="append", default=[], help="an extension that context must have")
    ap.add_argument("--endpoint", action="append", default=[], help="a PJSIP endpoint that must load")
    ap.add_argument("--registration", action="append", default=[], help="a PJSIP outbound registration that must load")
    ap.add_argument("--ari-user", default="", help="an ARI user that must load")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    root = Path(args.root)
    staged = root / args.etc.lstrip("/")
    work_in_root = f"/tmp/phoneagent-config-check-{os.getpid()}"
    work = root / work_in_root.lstrip("/")
    _loopback_up()
    for sub in ("run", "log", "spool", "lib", "cache"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    conf = f"{work_in_root}/asterisk.conf"
    (work / "asterisk.conf").write_text(_check_conf(staged, args.etc, work_in_root))
    ast = ["chroot", str(root), "/usr/sbin/asterisk", "-C", conf]
    problems: list[str] = []
    version = ""
    with open(work / "console.out", "w") as out:
        proc = subprocess.Popen([*ast, "-f", "-n", "-q"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def rx(cmd: str) -> str:
        done = subprocess.run([*ast, "-rx", cmd], capture_output=True, text=True, timeout=30, check=False)
        return done.stdout if done.returncode == 0 else ""

    try:
        deadline = time.monotonic() + args.timeout
        while "Asterisk" not in (version := rx("core show version")):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (work / "console.out").read_text(errors="replace")[-1500:]
                return _report([f"Asterisk did not start on these configs (exit {proc.poll()}): {tail}"], "")
            time.sleep(0.3)
        rx("core waitfullybooted")
        plan = rx(f"dialplan show {args.context}")
        if f"[ Context '{args.context}'" not in plan:
            problems.append(f"dialplan: context [{args.context}] did not load (extensions.conf)")
        problems += [f"dialplan: [{args.context}] has no extension '{e}'" for e in args.extension if f"'{e}' =>" not in plan]
        if "transport-udp" not in rx("pjsip show transports"):
            problems.append("pjsip.conf: transport-udp did not load")
        for name in args.endpoint:
            if "Unable to find object" in (shown := rx(f"pjsip show endpoint {name}")) or not shown.strip():
                problems.append(f"pjsip.conf: endpoint {name} did not load")
        for name in args.registration:
            if "Unable to find object" in (shown := rx(f"pjsip show registration {name}")) or not shown.strip():
                problems.append(f"pjsip.conf: registration {name} did not load")
        if args.ari_user and args.ari_user not in rx("ari show users").split():
            problems.append(f"ari.conf: ARI user {args.ari_user} did not load (ari_user.local.conf)")
        if "Server Enabled and Bound to" not in rx("http show status"):
            problems.append("http.conf: the HTTP server (ARI) is not enabled and bound")
        running = rx("module show like audiosocket").count("Running")
        if running < 3:
            problems.append(f"modules.conf: {running} of 3 AudioSocket modules running")
        log = work / "log" / "messages.log"
        managed = {f.name for f in staged.iterdir() if f.is_file()}
        problems += [f"log: {line.strip()[:300]}" for line in (log.read_text(errors="replace").splitlines() if log.exists() else [])
                     if is_problem(line, managed)]
    finally:
        rx("core stop now")
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return _report(problems, " ".join(next((ln for ln in version.splitlines() if ln.startswith("Asterisk")), "").split()[:2]))


def _report(problems: list[str], version: str) -> int:
    for p in problems:
        print(p)
    if not problems:
        print(f"ok: {version}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
