"""Kamailio for the multi-host test bed: Debian's own package, in a root of its own.

Production runs Debian's kamailio package on its own host (bookworm ships 5.6). Here it lives in
a `debootstrap --variant=minbase --include=kamailio sid` root under the cache (about 90 s and
320 MB, once), apart from the Asterisk root so the offline bundle does not grow, and it is never
installed as a service on this machine (a system Kamailio would take port 5060 from the test
bed). It runs in the foreground inside a network namespace and logs to a file; the config is the
repo's kamailio/kamailio.cfg, with the deployment's values in a generated kamailio-local.cfg.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import testbed

log = logging.getLogger(__name__)

REPO_CONFIG = Path(__file__).resolve().parent.parent / "kamailio" / "kamailio.cfg"
ROLE_TEMPLATES = Path(__file__).resolve().parent.parent / "ansible" / "roles" / "phoneagent_kamailio" / "templates"
MARKER = ".phoneagent-kamailio"
SIP_PORT = 5060


def root_dir() -> Path:
    return testbed.cache_dir() / "kamailio-sid"


def _ok(root: Path) -> bool:
    return (root / MARKER).is_file() and (root / "usr/sbin/kamailio").is_file()


def ensure_built(force: bool = False) -> Path:
    """The cached Kamailio root, built when missing or broken (root only; needs the mirror once)."""
    root = root_dir()
    if _ok(root) and not force:
        return root
    with testbed._locked():
        if _ok(root) and not force:
            return root
        if os.geteuid() != 0:
            raise testbed.TestBedError("building the Kamailio root needs root (debootstrap)")
        t0 = time.monotonic()
        tmp = testbed.debootstrap(root, "sid", ("kamailio",), "usr/sbin/kamailio", "the Kamailio root")
        version = testbed._run(["chroot", str(tmp), "/usr/sbin/kamailio", "-v"], timeout=30).stdout.splitlines()
        (tmp / MARKER).write_text((version[0] if version else "kamailio") + "\n")
        testbed._remove_tree(root)
        tmp.rename(root)
        log.info("built %s in %.1f s, %s MB", root, time.monotonic() - t0, testbed.disk_usage_mb(root))
        return root


def _render(template: str, **values: object) -> str:
    """One of the ansible role's templates (the same kamailio-local.cfg and dispatcher.list a
    deployment gets), rendered as ansible renders it."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE_TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True)
    return env.get_template(f"{template}.j2").render(ansible_managed="devtools.kamailio (test bed)", **values)


def render_local(listen: str, dispatcher_list: str, ctl: str, *, ping_s: int = 2, threshold: int = 2,
                 failover_ms: int = 2000) -> str:
    """kamailio-local.cfg: what kamailio.cfg leaves to the deployment (see its header)."""
    return _render("kamailio-local.cfg", phoneagent_kamailio_listen_address=listen, phoneagent_kamailio_sip_port=SIP_PORT,
                   phoneagent_kamailio_list_path=dispatcher_list, phoneagent_kamailio_ctl=ctl,
                   phoneagent_kamailio_probe_interval_s=ping_s, phoneagent_kamailio_probe_threshold=threshold,
                   phoneagent_kamailio_failover_ms=failover_ms)


def render_dispatcher_list(asterisks: Sequence[str]) -> str:
    """dispatcher.list: set 1 holds every Asterisk (host or host:port), in this order."""
    return _render("dispatcher.list", phoneagent_kamailio_asterisk_servers=list(asterisks))


@dataclass(frozen=True)
class Destination:
    uri: str
    flags: str  # A: active, T: trying (a probe failed; still given calls), I: inactive, D: disabled; P: probing

    @property
    def up(self) -> bool:
        """Given new calls (active or trying)."""
        return self.flags[:1] in ("A", "T")


def parse_dispatcher_list(text: str) -> list[Destination]:
    """`kamcmd dispatcher.list` output, reduced to each destination and its flags."""
    return [Destination(m[1], m[2]) for m in re.finditer(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", text)]


class Kamailio:
    """One Kamailio process: config under <root>/etc/phoneagent-<name>/, log on the host."""

    def __init__(self, name: str, listen: str, asterisks: Sequence[str], *, netns_argv: Sequence[str] = (),
                 log_path: Path | None = None, ping_s: int = 2, threshold: int = 2, failover_ms: int = 2000) -> None:
        self.root = ensure_built()
        self.name, self.listen = name, listen
        self.etc = f"/etc/phoneagent-{name}"
        self.ctl = f"unix:/run/phoneagent-{name}.ctl"
        self.netns_argv = list(netns_argv)
        self.log_path = log_path or testbed.cache_dir() / f"kamailio-{name}.log"
        self._local = render_local(listen, f"{self.etc}/dispatcher.list", self.ctl, ping_s=ping_s,
                                   threshold=threshold, failover_ms=failover_ms)
        self._list = render_dispatcher_list(asterisks)
        self.proc: subprocess.Popen[bytes] | None = None

    def _write(self) -> None:
        etc = self.root / self.etc.lstrip("/")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "kamailio.cfg").write_bytes(REPO_CONFIG.read_bytes())
        (etc / "kamailio-local.cfg").write_text(self._local)
        (etc / "dispatcher.list").write_text(self._list)
        (self.root / "run").mkdir(exist_ok=True)

    def check(self) -> str:
        """`kamailio -c`: the config parses, with this deployment's values (raises with the reason)."""
        self._write()
        done = testbed._run(["chroot", str(self.root), "/usr/sbin/kamailio", "-c", "-f", f"{self.etc}/kamailio.cfg"], timeout=30)
        if done.returncode != 0:
            raise testbed.TestBedError(f"kamailio -c failed: {(done.stderr + done.stdout)[-3000:]}")
        return done.stdout + done.stderr

    def start(self, timeout: float = 20) -> None:
        self.check()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            # -DD: stay in the foreground (its children still fork), -E: log to stderr.
            self.proc = subprocess.Popen([*self.netns_argv, "chroot", str(self.root), "/usr/sbin/kamailio", "-DD", "-E",
                                          "-f", f"{self.etc}/kamailio.cfg"], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=testbed._ENV, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.destinations()
                return
            except testbed.TestBedError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise testbed.TestBedError(f"kamailio did not start; last lines of {self.log_path}:\n"
                                               + testbed._tail(self.log_path)) from None
                time.sleep(0.2)

    def rpc(self, *command: str) -> str:
        done = testbed._run(["chroot", str(self.root), "/usr/sbin/kamcmd", "-s", self.ctl, *command], timeout=10)
        if done.returncode != 0:
            raise testbed.TestBedError(f"kamcmd {' '.join(command)}: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def destinations(self) -> list[Destination]:
        return parse_dispatcher_list(self.rpc("dispatcher.list"))

    def wait_for(self, want: dict[str, bool], timeout: float) -> float:
        """Until each destination URI in `want` is up (True) or down (False); the seconds it took."""
        t0 = time.monotonic()
        while True:
            state = {d.uri: d.up for d in self.destinations()}
            if all(state.get(uri) == up for uri, up in want.items()):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise testbed.TestBedError(f"dispatcher state {state}, wanted {want} within {timeout:g} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def running(name: str, listen: str, asterisks: Sequence[str], **options: Any) -> Iterator[Kamailio]:
    """A started Kamailio (see `Kamailio` for the options), stopped on exit."""
    k = Kamailio(name, listen, asterisks, **options)
    k.start()
    try:
        yield k
    finally:
        k.stop()
