"""A small data centre on one machine, for the scale-out tests: several hosts on one private network.

Each host is a network namespace (devtools.netns) with one address on a bridge that lives in a
hub namespace; this process joins the bridge too (as .1), so tests reach every host directly.
Asterisk servers run from the test bed's root, each with its own directories (config, run, log,
spool, astdb) and the repo's asterisk/*.conf adapted to its address; Kamailio runs from its own
root (devtools.kamailio). Killing a host's processes and its namespace removes it from the net.
Root only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import testbed
from devtools.netns import NetNs
from devtools.sipcall import Pause, SippResult, Step, place_call

log = logging.getLogger(__name__)

SUBNET = "10.77.0"  # /24; this process is .1
PROXY_STANZA = Path(__file__).resolve().parent.parent / "kamailio" / "asterisk-pjsip.conf"
_INSTANCE_DIRS = {"astetcdir": "etc", "astrundir": "run", "astlogdir": "log", "astspooldir": "spool",
                  "astdbdir": "lib", "astcachedir": "cache"}


class Lan:
    """The bridge, the hosts on it, and this process's own leg (SUBNET.1)."""

    _made = 0

    def __init__(self) -> None:
        self.hub = NetNs()
        self.hosts: dict[str, NetNs] = {}
        self.addresses: dict[str, str] = {}
        try:
            self.hub.run("ip", "link", "add", "br0", "type", "bridge")
            self.hub.run("ip", "link", "set", "br0", "up")
            Lan._made += 1  # a name of its own: the last Lan's leg may still be going away
            self.own_if = f"pa{os.getpid() % 100_000}n{Lan._made % 1000}"
            self.hub.run("ip", "link", "add", "vself", "type", "veth", "peer", "name", self.own_if, "netns", str(os.getpid()))
            self.hub.run("ip", "link", "set", "vself", "master", "br0", "up")
            _ip("address", "add", f"{SUBNET}.1/24", "dev", self.own_if)
            _ip("link", "set", self.own_if, "up")
        except Exception:
            self.close()
            raise

    def add(self, name: str, octet: int) -> NetNs:
        """A new host `name` at SUBNET.<octet>."""
        ns = NetNs()
        self.hosts[name], self.addresses[name] = ns, f"{SUBNET}.{octet}"
        self.hub.run("ip", "link", "add", f"v{octet}", "type", "veth", "peer", "name", "eth0", "netns", str(ns.pid))
        self.hub.run("ip", "link", "set", f"v{octet}", "master", "br0", "up")
        ns.run("ip", "address", "add", f"{SUBNET}.{octet}/24", "dev", "eth0")
        ns.run("ip", "link", "set", "eth0", "up")
        return ns

    def close(self) -> None:
        for ns in self.hosts.values():
            ns.close()
        subprocess.run(["ip", "link", "delete", self.own_if], capture_output=True, check=False, timeout=30)
        self.hub.close()  # its veth ends go with it


def _ip(*argv: str) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class ClusterAsterisk(testbed.AsteriskBed):
    """One Asterisk of the cluster: the bed's root, its own directories under /var/lib/phoneagent-cluster/<name>."""

    name: str = "a"
    netns_pid: int = 0

    @property
    def base(self) -> str:
        return f"/var/lib/phoneagent-cluster/{self.name}"

    def asterisk_argv(self) -> list[str]:
        assert self.root is not None
        return ["chroot", str(self.root), "/usr/sbin/asterisk", "-C", f"{self.base}/etc/asterisk.conf"]

    def log_file(self) -> Path:
        return self.host_path(f"{self.base}/log/messages.log")

    def run_dir(self) -> Path:
        return self.host_path(f"{self.base}/run")

    def active_channels(self) -> int:
        m = re.search(r"(\d+) active channels?", self.rx("core show channels count"))
        return int(m[1]) if m else 0

    def calls_processed(self) -> int:
        m = re.search(r"(\d+) calls? processed", self.rx("core show channels count"))
        return int(m[1]) if m else 0


def instance_configs(bed: ClusterAsterisk, proxy: str, audiosocket: str) -> dict[str, bytes]:
    """The repo's configs for one cluster Asterisk: its own directories, SIP and ARI on its own
    address, calls from the proxy accepted (kamailio/asterisk-pjsip.conf), the agent at `audiosocket`."""
    files = testbed._desired_configs(bed)

    def sub(name: str, pattern: str, repl: str) -> None:
        text, n = re.subn(pattern, repl, files[name].decode(), flags=re.M)
        if n == 0:
            raise testbed.TestBedError(f"asterisk/{name}: no line matches {pattern!r} (the cluster bed adapts it)")
        files[name] = text.encode()

    # The repo's section is a template, "(!)", so that the bed's Asterisk keeps Debian's compiled-in
    # paths; an instance needs its own, so the section must be a real one here.
    sub("asterisk.conf", r"^\[directories\]\(!\)$", "[directories]")
    for key, sub_dir in _INSTANCE_DIRS.items():
        sub("asterisk.conf", rf"^{key}\s*=>.*$", f"{key} => {bed.base}/{sub_dir}")
    sub("pjsip.conf", r"^bind = 127\.0\.0\.1:", f"bind = {bed.sip_host}:")
    sub("http.conf", r"^bindaddr = 127\.0\.0\.1$", f"bindaddr = {bed.sip_host}")
    sub("extensions.conf", r"^PHONEAGENT_AUDIOSOCKET = .*$", f"PHONEAGENT_AUDIOSOCKET = {audiosocket}")
    files["pjsip.conf"] += b"\n" + PROXY_STANZA.read_bytes().replace(b"KAMAILIO_ADDRESS", proxy.encode())
    return files


def start_asterisk(name: str, ns: NetNs, address: str, proxy: str, audiosocket: str, timeout: float = 60) -> ClusterAsterisk:
    """Start one cluster Asterisk inside `ns` and wait until it is healthy."""
    root = testbed.ensure_chroot()
    user, password = testbed.ari_credentials()
    bed = ClusterAsterisk(root=root, ari_url=f"http://{address}:8088", ari_user=user, ari_password=password,
                          sip_host=address, name=name, netns_pid=ns.pid)
    testbed._stop_locked(bed)  # a leftover from a run that died
    etc = bed.host_path(f"{bed.base}/etc")
    if etc.is_dir():
        for old in etc.iterdir():
            old.unlink()
    etc.mkdir(parents=True, exist_ok=True)
    for sub_dir in _INSTANCE_DIRS.values():
        bed.host_path(f"{bed.base}/{sub_dir}").mkdir(parents=True, exist_ok=True)
    for file_name, data in instance_configs(bed, proxy, audiosocket).items():
        (etc / file_name).write_bytes(data)
    (etc / testbed.ARI_USER_FILE).chmod(0o600)
    done = subprocess.run(ns.argv(*bed.asterisk_argv(), "-g", "-q"), capture_output=True, text=True, env=testbed._ENV,
                          timeout=30, check=False)
    if done.returncode != 0:
        raise testbed.TestBedError(f"asterisk {name} failed to start: {(done.stderr + done.stdout).strip()}")
    report = testbed._wait_healthy(bed, timeout, just_started=True)
    if not report.ok:
        testbed._stop_locked(bed)
        raise testbed.TestBedError(f"asterisk {name} not healthy: {'; '.join(report.problems)}\n{testbed._tail(bed.log_file())}")
    return bed


def stop_asterisk(bed: ClusterAsterisk) -> None:
    """`core stop now`: its calls are hung up (their callers get a BYE), then it exits."""
    testbed._stop_locked(bed)


@contextlib.contextmanager
def network() -> Iterator[Lan]:
    lan = Lan()
    try:
        yield lan
    finally:
        lan.close()


ROOT = Path(__file__).resolve().parents[1]
SELF = f"{SUBNET}.1"  # this process on the bed's network


class Bed:
    """Kamailio at .2, Asterisk servers at .11 and .12, agent hosts from .21, this process (SIPp,
    the database) at .1: the hosts are added by the caller; this places calls and starts servers."""

    def __init__(self, lan: Lan, tmp: Path) -> None:
        self.lan, self.tmp = lan, tmp
        self.proxy = lan.addresses["kamailio"]
        self.asterisks: dict[str, ClusterAsterisk] = {}

    def start(self, name: str) -> ClusterAsterisk:
        host = f"asterisk-{name}"
        self.asterisks[name] = start_asterisk(name, self.lan.hosts[host], self.lan.addresses[host], self.proxy,
                                                      audiosocket=f"{SUBNET}.21:9092")
        return self.asterisks[name]

    def uri(self, name: str) -> str:
        return f"sip:{self.lan.addresses[f'asterisk-{name}']}:5060"

    def call(self, extension: str = "echo", *, ms: int = 1000, wait_for_bye: bool = False, record_as: str = "",
             steps: list[Step] | None = None) -> SippResult:
        """One SIPp call through the proxy: silent for `ms` (or `steps`), then BYE (or wait for the far end's)."""
        headers = {"X-Phoneagent-Rec": record_as} if record_as else None
        return place_call(self.proxy, 5060, extension, steps or [Pause(ms)], local_ip=SELF, via_proxy=True, headers=headers,
                          wait_for_bye=wait_for_bye, hold_ms=ms if wait_for_bye else None, timeout=90, workdir=self.tmp)

    def calls(self, count: int, at_once: int = 2) -> list[SippResult]:
        with ThreadPoolExecutor(at_once) as pool:
            return list(pool.map(lambda _: self.call(), range(count)))

    def processed(self) -> dict[str, int]:
        """Calls each running Asterisk has taken so far."""
        return {name: a.calls_processed() for name, a in self.asterisks.items() if a.is_running()}

    def close(self) -> None:
        for a in self.asterisks.values():
            stop_asterisk(a)


class AgentHost:
    """`phoneagent serve --ari` on its own host, taking calls from every Asterisk of the bed."""

    def __init__(self, bed: Bed, name: str, octet: int, db: str, *, max_calls: int = 4, agent: str = "dialog",
                 engines: dict[str, Any] | None = None, host_timeout_s: float = 60.0) -> None:
        self.bed, self.name, self.agent = bed, name, agent
        self.ns = bed.lan.add(name, octet)
        self.address = bed.lan.addresses[name]
        self.config = bed.tmp / f"{name}.yaml"
        urls = [f"http://{a.sip_host}:8088" for a in bed.asterisks.values()]
        self.config.write_text(json.dumps({
            "host": self.address, "port": 9092, "db": db, "db_spool": str(bed.tmp / f"{name}-spool.jsonl"),
            "instance": name, "host_timeout_s": host_timeout_s, "http_host": self.address, "http_port": 8090, "max_calls": max_calls,
            "ari": {"url": urls[0], "servers": urls[1:], "app": f"phoneagent-{name}"}, "engines": engines or {}}))
        self.log = bed.tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        user, password = testbed.ari_credentials()
        env = {**os.environ, "PHONEAGENT_ARI_USER": user, "PHONEAGENT_ARI_PASSWORD": password}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.ns.argv(sys.executable, "-m", "phoneagent.cli", "serve", "--agent", self.agent, "--ari",
                                                      "--config", str(self.config), "--skip-preflight"),
                                         cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://{self.address}:8090/healthz", timeout=2) as r:
                state: dict[str, Any] = json.loads(r.read())
                return state
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 300) -> dict[str, Any]:
        """Until it is connected to every Asterisk."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.health()
            if state and state["ok"] and all(state.get("asterisks", {"": state["ari"]}).values()):
                return state
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready ({state}); log:\n{testbed._tail(self.log)}")
            time.sleep(0.3)

    def kill(self) -> None:
        """The host dies at once (kill -9): no clean-up, no goodbye to Asterisk or the database."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
