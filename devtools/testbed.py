"""The project's own Asterisk 22 test bed, used by dev, tests, demos and benchmarks.

Debian 12 ships no Asterisk, so unless the host already has Asterisk >= 22.7 (the first 22.x
whose AudioSocket speaks 16 kHz) we debootstrap a Debian sid chroot with Debian's asterisk
package under $PHONEAGENT_CACHE and run it there. The configs are the repo's asterisk/*.conf,
the same files a user adapts, copied in at every start so the bed always runs what is in git.
ARI credentials never enter the repo: they come from the environment or a generated file.
No proc/dev mounts: debootstrap creates the device nodes Asterisk needs and it runs without
/proc (verified), so there is nothing to leak or unmount after a crash.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_CONFIG_DIR = Path(__file__).resolve().parent.parent / "asterisk"
MIN_HOST_VERSION = (22, 7)
SIP_HOST = "127.0.0.1"
SIP_PORT = 5060  # must match transport-udp in asterisk/pjsip.conf
ARI_URL = "http://127.0.0.1:8088"  # must match asterisk/http.conf
ARI_APP = "phoneagent"  # must match PHONEAGENT_ARI_APP in asterisk/extensions.conf
AUDIOSOCKET_HOST = "127.0.0.1"
AUDIOSOCKET_PORT = 9092  # must match PHONEAGENT_AUDIOSOCKET in asterisk/extensions.conf
AGENT_CONTEXT = "phoneagent-agent"
TEST_CONTEXT = "phoneagent-test"
RECORDING_DIR = "/tmp/phoneagent-rec"  # where exten `record` writes, inside Asterisk
ARI_RECORDING_DIR = "/var/spool/asterisk/recording"  # ARI's stored recordings (astspooldir)
TEST_SOUNDS_DIR = "/usr/share/asterisk/sounds/en/phoneagent-test"  # prompts tests write for Playback
AUDIOSOCKET_MODULES = ("res_audiosocket", "chan_audiosocket", "app_audiosocket")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MARKER = ".phoneagent-built"
ARI_USER_FILE = "ari_user.local.conf"  # included by asterisk/ari.conf
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "HOME": "/root"}
_LOG_IN_ASTERISK = "/var/log/asterisk/messages.log"


class TestBedError(RuntimeError):
    """The test bed could not be built, started or asked something; the message says why."""

    __test__ = False  # not a pytest test class despite the name


class AriError(TestBedError):
    """An ARI request failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"ARI {status}: {message}")
        self.status = status


def cache_dir() -> Path:
    return Path(os.environ.get("PHONEAGENT_CACHE") or Path.home() / ".cache" / "phoneagent")


def chroot_root() -> Path:
    return cache_dir() / "asterisk-sid"


def _host_dir() -> Path:
    """Private config/run/log dirs for a host Asterisk, so the system instance is untouched."""
    return cache_dir() / "asterisk-host"


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=_ENV, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TestBedError(f"{' '.join(argv)!r} did not finish in {timeout:g} s") from exc


def parse_version(text: str) -> tuple[int, int] | None:
    m = re.search(r"Asterisk (\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2])) if m else None


def host_asterisk() -> str | None:
    """Path of a host Asterisk new enough for 16 kHz AudioSocket, else None."""
    exe = shutil.which("asterisk", path=os.environ.get("PATH", "") + ":" + _ENV["PATH"])
    if exe is None:
        return None
    try:
        version = parse_version(_run([exe, "-V"], timeout=10).stdout)
    except (TestBedError, OSError):
        return None
    return exe if version is not None and version >= MIN_HOST_VERSION else None


def debian_mirror(sources: list[Path] | None = None) -> str:
    """The host's Debian mirror (deb822 or one-line apt sources), for debootstrap."""
    if env := os.environ.get("PHONEAGENT_DEBIAN_MIRROR"):
        return env
    if sources is None:
        sources = [Path("/etc/apt/sources.list"),
                   *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
                   *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    pattern = re.compile(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", re.M | re.I)
    for path in sources:
        with contextlib.suppress(OSError):
            for uri in pattern.findall(path.read_text()):
                if uri.startswith("http") and uri.rstrip("/").endswith("/debian"):
                    return str(uri).rstrip("/")
    return DEFAULT_MIRROR


@contextlib.contextmanager
def _locked(timeout: float = 1800) -> Iterator[None]:
    """One process at a time builds, starts or stops the bed (flock: freed if we die)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "asterisk.lock", "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TestBedError(f"another process holds {f.name} for {timeout:g} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _remove_tree(path: Path) -> None:
    """rm -rf a chroot, first unmounting what debootstrap may have left (proc, sys).

    Deleting through a bind-mounted /dev would delete the host's device nodes: refuse if a
    mount remains, and let rm stay on one file system as a second guard."""
    if not path.exists() and not path.is_symlink():
        return
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        if _run(["umount", point], timeout=30).returncode != 0:
            _run(["umount", "-l", point], timeout=30)
    if left := _mounts_under(path):
        raise TestBedError(f"refusing to delete {path}: still mounted: {left}")
    _run(["rm", "-rf", "--one-file-system", str(path)], timeout=300)


def _root_ok(root: Path) -> bool:
    return (root / MARKER).is_file() and (root / "usr/sbin/asterisk").is_file()


def debootstrap(root: Path, suite: str, include: Sequence[str], probe: str, what: str, *, mirror: str = "",
                script: str = "", keyring: Path | None = None) -> Path:
    """`debootstrap --variant=minbase --include=...` into ROOT.tmp (returned; the caller renames it
    into place, so a half-built root is never at ROOT), without the downloaded .debs, with an
    /etc/hosts (debootstrap writes none). Raises with the log's tail if `probe` is not there.
    Another distribution: its `mirror`, debootstrap's `script` for it and its archive `keyring`."""
    tmp = root.with_name(root.name + ".tmp")
    _remove_tree(tmp)
    build_log = cache_dir() / f"{root.name}-build.log"
    mirror = mirror or debian_mirror()
    log.info("building %s in %s from %s (about a minute)", what, root, mirror)
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(include)}",
            *([f"--keyring={keyring}"] if keyring else []), suite, str(tmp), mirror, *([script] if script else [])]
    with open(build_log, "w") as out:
        try:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800,
                                env=_ENV, stdin=subprocess.DEVNULL, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    if rc != 0 or not (tmp / probe).exists():
        _remove_tree(tmp)
        raise TestBedError(f"debootstrap of {what} failed (rc {rc}); last lines of {build_log}:\n" + _tail(build_log))
    for deb in (tmp / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    # debootstrap writes no /etc/hosts; without it res_resolver_unbound fails to load.
    (tmp / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    return tmp


def _build_chroot(root: Path) -> None:
    """debootstrap into ROOT.tmp, then rename: a half-built chroot is never at ROOT."""
    t0 = time.monotonic()
    tmp = debootstrap(root, "sid", ("asterisk", "asterisk-modules", "asterisk-config"), "usr/sbin/asterisk", "the Asterisk chroot")
    version = _run(["chroot", str(tmp), "/usr/sbin/asterisk", "-V"], timeout=30).stdout.strip()
    (tmp / MARKER).write_text(version + "\n")
    old = root.with_name(root.name + ".old")
    if root.exists():
        _stop_locked(_make_bed(root))  # a broken root may still run an Asterisk
        _remove_tree(old)
        root.rename(old)
    tmp.rename(root)
    _remove_tree(old)
    log.info("built %s in %.1f s: %s, %s MB", root, time.monotonic() - t0, version,
             disk_usage_mb(root))


def disk_usage_mb(path: Path) -> int:
    out = _run(["du", "-sxm", str(path)], timeout=120).stdout.split()
    return int(out[0]) if out else 0


def _ensure_built_locked(force: bool = False) -> Path | None:
    if not force and host_asterisk() is not None:
        return None
    return _chroot_locked(force)


def _chroot_locked(force: bool = False) -> Path:
    root = chroot_root()
    if force or not _root_ok(root):
        if os.geteuid() != 0:
            raise TestBedError("building the Asterisk chroot needs root (debootstrap, chroot); "
                               f"or install Asterisk >= {'.'.join(map(str, MIN_HOST_VERSION))}")
        _build_chroot(root)
    return root


def ensure_built(force: bool = False) -> Path | None:
    """The chroot root (built if missing or broken), or None when the host Asterisk is used."""
    if not force:
        if host_asterisk() is not None:
            return None
        if _root_ok(chroot_root()):
            return chroot_root()
    with _locked():
        return _ensure_built_locked(force)


def ensure_chroot() -> Path:
    """The chroot root, built if missing or broken, even where the host has its own Asterisk
    (the multi-host bed, devtools.cluster, runs several Asterisk servers from it)."""
    if _root_ok(chroot_root()):
        return chroot_root()
    with _locked():
        return _chroot_locked()


def ari_credentials() -> tuple[str, str]:
    """(user, password): env PHONEAGENT_ARI_USER/_PASSWORD, else a 0600 file made once."""
    path = cache_dir() / "ari-credentials"
    stored: dict[str, str] = {}
    if not (os.environ.get("PHONEAGENT_ARI_USER") and os.environ.get("PHONEAGENT_ARI_PASSWORD")):
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:  # O_EXCL: two processes never make two passwords
                f.write(f"user=phoneagent\npassword={secrets.token_urlsafe(24)}\n")
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            stored[key.strip()] = value.strip()
    user = os.environ.get("PHONEAGENT_ARI_USER") or stored.get("user") or "phoneagent"
    password = os.environ.get("PHONEAGENT_ARI_PASSWORD") or stored.get("password", "")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", user) or not password or "\n" in password:
        raise TestBedError(f"bad ARI credentials (user {user!r}; see {path})")
    return user, password


def render_ari_user(user: str, password: str) -> str:
    """The ari.conf user section, kept out of the repo (ari.conf #includes it)."""
    escaped = password.replace("\\", "\\\\").replace(";", "\\;")
    return (f"; generated by devtools.testbed: do not commit\n[{user}]\ntype = user\n"
            f"read_only = no\npassword = {escaped}\npassword_format = plain\n")


@dataclass(frozen=True)
class HealthReport:
    version: str  # e.g. "22.10.1+dfsg+~cs6.17.60671434-1"; "" when Asterisk did not answer
    ari_ok: bool
    audiosocket_modules: dict[str, bool]
    ok: bool
    problems: list[str]


@dataclass(frozen=True)
class AsteriskBed:
    """Where the running test bed is and how to reach it."""

    root: Path | None  # chroot root; None when the host's Asterisk is used
    ari_url: str = ARI_URL
    ari_user: str = "phoneagent"
    ari_password: str = field(default="", repr=False)
    ari_app: str = ARI_APP
    sip_host: str = SIP_HOST
    sip_port: int = SIP_PORT
    audiosocket_addr: str = f"{AUDIOSOCKET_HOST}:{AUDIOSOCKET_PORT}"

    def asterisk_argv(self) -> list[str]:
        if self.root is None:
            exe = host_asterisk() or "asterisk"
            return [exe, "-C", str(_host_dir() / "etc/asterisk.conf")]
        return ["chroot", str(self.root), "/usr/sbin/asterisk"]

    def rx(self, cmd: str, timeout: float = 10) -> str:
        """Run one CLI command (asterisk -rx) and return its output; raise if it fails."""
        res = _run([*self.asterisk_argv(), "-rx", cmd], timeout=timeout)
        if res.returncode != 0:
            raise TestBedError(f"asterisk -rx {cmd!r}: {(res.stderr or res.stdout).strip()}")
        return res.stdout

    def host_path(self, path_in_asterisk: str) -> Path:
        """The host path of a path inside the chroot, following its symlinks inside the chroot
        (/var/run -> /run is absolute: naively joined it would point at the HOST's /run)."""
        if self.root is None:
            return Path(path_in_asterisk)
        parts = [p for p in path_in_asterisk.split("/") if p]
        resolved: list[str] = []
        for _ in range(100):
            if not parts:
                return self.root.joinpath(*resolved)
            part = parts.pop(0)
            if part == "..":
                resolved = resolved[:-1]
                continue
            if part == ".":
                continue
            candidate = self.root.joinpath(*resolved, part)
            if candidate.is_symlink():
                target = os.readlink(candidate)
                parts = [p for p in target.split("/") if p] + parts
                if target.startswith("/"):
                    resolved = []
            else:
                resolved.append(part)
        raise TestBedError(f"too many symlinks resolving {path_in_asterisk}")

    def log_file(self) -> Path:
        if self.root is None:
            return _host_dir() / "log/messages.log"
        return self.host_path(_LOG_IN_ASTERISK)

    def run_dir(self) -> Path:
        """Where asterisk.pid and the control socket asterisk.ctl live, on the host."""
        return _host_dir() / "run" if self.root is None else self.host_path("/var/run/asterisk")

    def is_running(self) -> bool:
        """True when a daemon answers on the control socket (a stale socket file is not)."""
        try:
            return "Asterisk" in self.rx("core show version", timeout=5)
        except TestBedError:
            return False

    def health(self) -> HealthReport:
        problems: list[str] = []
        version = ""
        modules = {name: False for name in AUDIOSOCKET_MODULES}
        try:
            m = re.search(r"Asterisk (\S+)", self.rx("core show version", timeout=5))
            version = m[1] if m else ""
            if not version.startswith("22."):
                problems.append(f"unexpected Asterisk version {version!r}")
            for line in self.rx("module show like audiosocket", timeout=5).splitlines():
                name = line.split(".so")[0].strip()
                if name in modules:
                    modules[name] = " Running " in f" {line} "
        except TestBedError as exc:
            problems.append(f"Asterisk does not answer: {exc}")
        problems += [f"module {n} not running" for n, up in modules.items() if not up]
        ari_ok = False
        try:
            ari_ok = "system" in ari_request(self, "GET", "/asterisk/info", timeout=5)
        except (TestBedError, TypeError) as exc:
            problems.append(f"ARI {self.ari_url} does not answer: {exc}")
        return HealthReport(version, ari_ok, modules, not problems, problems)


def _make_bed(root: Path | None) -> AsteriskBed:
    user, password = ari_credentials()
    return AsteriskBed(root=root, ari_user=user, ari_password=password)


def load_bed() -> AsteriskBed:
    """The bed's addresses and credentials, without building or starting anything."""
    return _make_bed(None if host_asterisk() is not None else chroot_root())


def _etc_dir(bed: AsteriskBed) -> Path:
    return _host_dir() / "etc" if bed.root is None else bed.host_path("/etc/asterisk")


def _desired_configs(bed: AsteriskBed) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted(REPO_CONFIG_DIR.glob("*.conf"))}
    files[ARI_USER_FILE] = render_ari_user(bed.ari_user, bed.ari_password).encode()
    if bed.root is None:  # host: a private instance, its state under the cache dir
        dirs = {"astetcdir": "etc", "astrundir": "run", "astlogdir": "log",
                "astspooldir": "spool", "astdbdir": "lib", "astcachedir": "cache"}
        lines = [ln for ln in files["asterisk.conf"].decode().splitlines()
                 if not ln.strip().startswith("ast")]
        at = lines.index("[directories](!)") + 1
        lines[at:at] = [f"{k} => {_host_dir() / v}" for k, v in dirs.items()]
        files["asterisk.conf"] = ("\n".join(lines) + "\n").encode()
    return files


def _installed_configs(bed: AsteriskBed) -> dict[str, bytes]:
    etc = _etc_dir(bed)
    return {p.name: p.read_bytes() for p in etc.iterdir() if p.is_file()} if etc.is_dir() else {}


def _install_configs(bed: AsteriskBed, files: dict[str, bytes]) -> None:
    """Replace the whole config dir (Debian's ~100 samples would load modules we don't want)."""
    etc = _etc_dir(bed)
    if etc.is_dir():
        shutil.rmtree(etc)
    etc.mkdir(parents=True)
    for name, data in files.items():
        (etc / name).write_bytes(data)
    (etc / ARI_USER_FILE).chmod(0o600)
    if bed.root is None:
        for sub in ("run", "log", "spool", "lib", "cache"):
            (_host_dir() / sub).mkdir(parents=True, exist_ok=True)
    for path in (RECORDING_DIR, ARI_RECORDING_DIR, TEST_SOUNDS_DIR):
        bed.host_path(path).mkdir(parents=True, exist_ok=True)
    if bed.root is not None:
        write_hold_music(bed.host_path("/usr/share/asterisk/moh"))


def write_hold_music(moh_dir: Path) -> None:
    """A soft two-note loop, so hold (MOH) works without Debian's sound packages."""
    if moh_dir.is_dir() and any(moh_dir.iterdir()):
        return
    moh_dir.mkdir(parents=True, exist_ok=True)
    rate, notes = 8000, (440.0, 554.4, 659.3, 554.4)
    pcm = array("h", (int(2000 * math.sin(math.pi * (i % rate) / rate)
                          * math.sin(2 * math.pi * notes[i // rate] * i / rate))
                      for i in range(rate * len(notes))))
    with wave.open(str(moh_dir / "phoneagent-hold.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def daemon_pid(bed: AsteriskBed) -> int | None:
    """The pid in asterisk.pid if that process is alive and is this bed's asterisk."""
    try:
        pid = int((bed.run_dir() / "asterisk.pid").read_text().strip())
        proc = Path(f"/proc/{pid}")
        if proc.joinpath("comm").read_text().strip() != "asterisk":
            return None
        if " Z " in proc.joinpath("stat").read_text().replace("(asterisk)", ""):
            return None  # zombie: already dead
        if bed.root is not None and Path(os.readlink(proc / "root")) != bed.root.resolve():
            return None
        return pid
    except (OSError, ValueError):
        return None


def _clear_stale(bed: AsteriskBed) -> None:
    """After a crash or a wedge: kill a leftover daemon, remove its pid and control socket."""
    if (pid := daemon_pid(bed)) is not None:
        log.warning("killing unresponsive Asterisk pid %d", pid)
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while daemon_pid(bed) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if daemon_pid(bed) is None:
                break
        else:
            raise TestBedError(f"Asterisk pid {pid} survives SIGKILL")
    for name in ("asterisk.ctl", "asterisk.pid"):
        with contextlib.suppress(FileNotFoundError):
            (bed.run_dir() / name).unlink()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _wait_healthy(bed: AsteriskBed, timeout: float, just_started: bool = False) -> HealthReport:
    t0 = time.monotonic()
    while True:
        try:
            bed.rx("core waitfullybooted", timeout=max(t0 + timeout - time.monotonic(), 1))
            report = bed.health()
        except TestBedError as exc:
            report = HealthReport("", False, {}, False, [str(exc)])
        if report.ok or time.monotonic() > t0 + timeout:
            return report
        if just_started and time.monotonic() > t0 + 3 and daemon_pid(bed) is None:
            report.problems.append("the asterisk process exited during start-up")
            return report  # fail now, not after the whole timeout
        time.sleep(0.1)


def _start_locked(root: Path | None, timeout: float) -> AsteriskBed:
    bed = _make_bed(root)
    desired = _desired_configs(bed)
    if bed.is_running():
        if _installed_configs(bed) == desired:
            report = _wait_healthy(bed, timeout=min(timeout, 15))  # may still be booting
            if report.ok:
                return bed
            log.warning("running Asterisk is unhealthy (%s): restarting", "; ".join(report.problems))
        else:
            log.info("configs changed: restarting Asterisk")
        _stop_locked(bed)
    _clear_stale(bed)
    _install_configs(bed, desired)
    logfile = bed.log_file()
    if logfile.is_file() and logfile.stat().st_size > 20_000_000:
        logfile.replace(logfile.with_suffix(".log.old"))
    t0 = time.monotonic()
    res = _run([*bed.asterisk_argv(), "-g", "-q"], timeout=30)  # forks into the background
    if res.returncode != 0:
        raise TestBedError(f"asterisk failed to start (rc {res.returncode}): "
                           f"{(res.stderr + res.stdout).strip()}\n{_tail(logfile)}")
    report = _wait_healthy(bed, timeout, just_started=True)
    if not report.ok:
        raise TestBedError(f"Asterisk not healthy ({time.monotonic() - t0:.1f} s after start): "
                           f"{'; '.join(report.problems)}"
                           f"\n--- last lines of {logfile} ---\n{_tail(logfile)}")
    log.info("Asterisk %s up and healthy in %.2f s", report.version, time.monotonic() - t0)
    return bed


def start(timeout: float = 60) -> AsteriskBed:
    """Start the (already built) bed; a running, healthy one with current configs is reused."""
    with _locked():
        root = None if host_asterisk() is not None else chroot_root()
        if root is not None and not _root_ok(root):
            raise TestBedError(f"no Asterisk chroot at {root}: run `python -m devtools asterisk build`")
        return _start_locked(root, timeout)


def ensure(timeout: float = 60) -> AsteriskBed:
    """Build if missing or broken, start if not running, and wait until healthy."""
    with _locked():
        return _start_locked(_ensure_built_locked(), timeout)


def _stop_locked(bed: AsteriskBed, timeout: float = 20) -> None:
    if bed.is_running():
        with contextlib.suppress(TestBedError):  # the connection may drop as it exits
            bed.rx("core stop now", timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (bed.is_running() or daemon_pid(bed)):
            time.sleep(0.1)
    _clear_stale(bed)


def stop() -> None:
    """Stop the bed's Asterisk (gracefully, then by signal) and remove its run files."""
    with _locked():
        _stop_locked(load_bed())


# --- ARI helpers: synchronous (urllib), so plain tests and scripts can use them; from async
# code call them via asyncio.to_thread. Every request has a timeout.

def ari_request(bed: AsteriskBed, method: str, path: str, params: dict[str, str] | None = None,
                body: Any = None, timeout: float = 10) -> Any:
    """One ARI REST call; returns the decoded JSON (None for an empty answer)."""
    url = f"{bed.ari_url}/ari{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = None if body is None else json.dumps(body).encode()
    auth = base64.b64encode(f"{bed.ari_user}:{bed.ari_password}".encode()).decode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Basic {auth}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            raise AriError(exc.code, exc.read().decode(errors="replace") or exc.reason) from None
    except (urllib.error.URLError, OSError) as exc:
        raise AriError(0, f"{method} {url}: {exc}") from None
    return json.loads(raw) if raw.strip() else None
