"""The offline bundle: everything a box with no network needs to run the agent, checksummed.

Built on a connected Debian 12 machine (the wheels are built for its Python), then copied to the
ansible controller; the playbook installs only from it. `--releases bookworm,noble` adds Ubuntu
24.04: the same pinned wheels for its Python 3.12 (binary wheels downloaded for its tags; ours and
the llama-cpp-python build are pure-Python/ctypes wheels and are shared), and its packages,
resolved and downloaded in a throwaway copy of a fresh Ubuntu 24.04 root (root needed).

    bundle/
      bundle.json          what it is: project version, releases (Python, wheels, .debs), llama.cpp build flags
      wheels/              every wheel the service needs (our own, the llama-cpp-python we built), Debian 12
      wheels/requirements.txt   each wheel pinned by name and version (pip --no-index installs this)
      debs/*.deb           Debian packages the wheels need that a fresh Debian 12 server may lack
      wheels-noble/, debs-noble/   the same for Ubuntu 24.04 (python3.12-venv and what it needs included)
      kamailio/*.deb       Debian's kamailio and what a fresh server lacks for it (the proxy host)
      postgresql/*.deb     Debian's PostgreSQL 15 and what a fresh server lacks for it (shared records)
      kamailio-noble/, postgresql-noble/   Ubuntu 24.04's kamailio (5.7) and PostgreSQL 16, the same way
      models/<name>/...    model files named as in the catalogue, models/manifest.json (role, paths, sha256)
      agents/*.yaml        the example agent files
      asterisk/asterisk-root.tar.gz   Asterisk 22 in a Debian sid root (the test bed's method), no configs
      asterisk/moh/*.wav   hold music
      SHA256SUMS           of every file above (`sha256sum -c SHA256SUMS` checks a copied bundle)
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from devtools import target, testbed
from models import catalog

REPO = Path(__file__).resolve().parent.parent
# Debian packages the wheels need that a fresh server lacks (llama.cpp's OpenMP runtime), shipped
# as .deb files for the target's release: `apt-get download` on the build machine.
DEBS = ("libgomp1",)
# The same for a release other than the build machine's: resolved against a fresh root of it, so
# what a fresh host lacks for them (or has older: exact-version dependencies) comes along.
# python3.12-venv, not the python3-venv metapackage: that pins python3, which pre-depends on a
# configured python3-minimal of its exact version, and one dpkg run cannot order a pre-dependency.
RELEASE_DEBS = {"noble": ("libgomp1", "python3.12-venv")}
RELEASE_PYTHON = {"noble": "3.12"}
# The proxy and records hosts' packages for a release other than the build machine's (the role
# picks the host's part): its own kamailio and PostgreSQL, resolved the same way.
RELEASE_KAMAILIO = {"noble": ("kamailio",)}
RELEASE_POSTGRESQL = {"noble": ("postgresql-16",)}
POSTGRESQL_VERSION = {"bookworm": "15", "noble": "16"}  # the cluster is /etc/postgresql/<version>/main
# manylinux tags a release's glibc runs (noble: 2.39), for `pip download --platform`.
_MANYLINUX = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux_2_5", "manylinux1", "linux")
# Kamailio for a proxy host (ansible's phoneagent_kamailio): Debian's package and what a fresh
# server lacks for it.
KAMAILIO_DEBS = ("kamailio", "lsb-base", "libpcre3")
# PostgreSQL 15 for the shared call records (ansible's phoneagent_postgresql): Debian 12's package
# and what a fresh server lacks for it (apt-get install --simulate in a fresh bookworm root).
POSTGRESQL_DEBS = ("postgresql-15", "postgresql-client-15", "postgresql-common", "postgresql-client-common", "libpq5",
                   "libllvm14", "libz3-4", "libxml2", "libxslt1.1", "libicu72", "libldap-2.5-0", "libsasl2-2",
                   "libsasl2-modules-db", "locales", "libc-l10n", "ssl-cert", "ucf", "netbase", "libjson-perl", "perl",
                   "perl-base",  # perl pins its exact version: a host at an older point release needs it too
                   "libperl5.36", "perl-modules-5.36", "libgdbm6", "libgdbm-compat4")
DEFAULT_MODELS = ("silero-vad", "smart-turn-v3.2", "whisper-tiny.en", "piper-joe-medium", "gemma-3-270m",
                  "qwen2.5-coder-0.5b-instruct")


class BundleError(RuntimeError):
    """The bundle could not be built or does not check out; the message says why."""


sha256 = catalog.file_sha256


def _wheels(out: Path, llama_wheel: Path, pip: Sequence[str]) -> list[str]:
    """Our wheel and its engines' dependency closure; llama-cpp-python only from the wheel given."""
    out.mkdir(parents=True, exist_ok=True)
    # The versions this machine's venv runs (and its tests passed with), not whatever is newest.
    frozen = subprocess.run([*pip, "freeze", "--exclude-editable"], capture_output=True, text=True, check=False, timeout=120)
    constraints = out.parent / "constraints.txt"
    constraints.write_text("\n".join(line for line in frozen.stdout.splitlines()
                                      if "==" in line and not line.startswith("onprem-phone-agent==")) + "\n")
    argv = [*pip, "wheel", "-q", "--wheel-dir", str(out), "--find-links", str(llama_wheel.parent), "-c", str(constraints),
            "--only-binary", "llama-cpp-python", f"{REPO}[engines]"]
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools would reuse it, stale files included
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    shutil.rmtree(REPO / "build", ignore_errors=True)
    if done.returncode != 0:
        raise BundleError(f"pip wheel failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    pins = []
    for whl in sorted(out.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        pins.append(f"{name.replace('_', '-').lower()}=={version}")
    (out / "requirements.txt").write_text("\n".join(pins) + "\n")
    return pins


def _wheels_for(out: Path, source: Path, python: str, pip: Sequence[str]) -> None:
    """The wheels in `source` (pinned in its requirements.txt) for another CPython: pure ones and
    ours copied, binary ones downloaded for that Python's tags at the same versions."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pins = (source / "requirements.txt").read_text().split()
    shared = [w for w in source.glob("*.whl") if re.search(r"-(py3|py2\.py3)-none-(any|linux_\w+)\.whl$", w.name)]
    for whl in shared:
        shutil.copy2(whl, out / whl.name)
    have = {w.name.split("-")[0].replace("_", "-").lower() for w in shared}
    wanted = [pin for pin in pins if pin.split("==")[0] not in have]
    argv = [*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
            *(a for tag in _MANYLINUX for a in ("--platform", f"{tag}_{platform.machine()}")), "--dest", str(out), *wanted]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise BundleError(f"pip download for Python {python} failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    shutil.copy2(source / "requirements.txt", out / "requirements.txt")
    got = {w.name.split("-")[0].replace("_", "-").lower() for w in out.glob("*.whl")}
    if missing := sorted({pin.split("==")[0] for pin in pins} - got):
        raise BundleError(f"no wheel for Python {python} of: {', '.join(missing)}")


def _release_debs(out: Path, suite: str, parts: dict[str, Sequence[str]]) -> dict[str, list[str]]:
    """Each part's packages and what a fresh host of `suite` lacks or has older for them, resolved
    by apt (each part on its own: a host may get one role only) and downloaded in a throwaway copy
    of that release's fresh root (the converge test's), into out/<part>-<suite>/."""
    try:
        base = target.ensure_base(suite=suite)
    except testbed.TestBedError as exc:
        raise BundleError(f"the {suite} part needs a fresh {suite} root: {exc}") from exc
    work = testbed.cache_dir() / f"bundle-apt-{suite}"
    testbed._remove_tree(work)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(work)], check=True, timeout=600)
    got: dict[str, list[str]] = {}
    try:
        shutil.copy2("/etc/resolv.conf", work / "etc/resolv.conf")

        def apt(*argv: str) -> str:
            done = subprocess.run(["chroot", str(work), "/bin/sh", "-c", "cd /tmp && " + " ".join(argv)], capture_output=True,
                                  text=True, check=False, timeout=900, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
            if done.returncode != 0:
                raise BundleError(f"{' '.join(argv)} in a fresh {suite} root failed (rc {done.returncode}):\n{done.stderr[-2000:]}")
            return done.stdout

        apt("apt-get", "update", "-q")
        for part, packages in parts.items():
            names = re.findall(r"^Inst (\S+)", apt("apt-get", "install", "--simulate", "-q", *packages), re.M)
            apt("apt-get", "download", "-q", *names)
            dest = out / f"{part}-{suite}"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            for deb in (work / "tmp").glob("*.deb"):
                shutil.move(str(deb), dest / deb.name)
            got[part] = sorted(f.name for f in dest.glob("*.deb"))
    finally:
        testbed._remove_tree(work)
    return got


def _part(directory: str, debs: Sequence[str], **extra: str) -> dict[str, object]:
    """A bundle.json entry for one role's .debs: where they are, by package name."""
    return {"dir": directory, "debs": {name.split("_")[0]: name for name in debs}, **extra}


def _models(out: Path, names: Sequence[str]) -> dict[str, dict[str, object]]:
    """Copy each model (a file, a directory, a voice and its JSON) under models/<name>/."""
    cat = catalog.load_catalog()
    manifest: dict[str, dict[str, object]] = {}
    flat: list[dict[str, object]] = []
    for name in names:
        entry = catalog.get(cat, name)
        dest = out / name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if entry.path.is_dir():
            for f in sorted(p for p in entry.path.iterdir() if p.is_file() and not p.name.startswith(".")):
                shutil.copy2(f, dest / f.name)
            path = "."
        else:
            shutil.copy2(entry.path, dest / entry.path.name)
            path = entry.path.name
        config = None
        if entry.config_path is not None:
            shutil.copy2(entry.config_path, dest / entry.config_path.name)
            config = entry.config_path.name
        files: dict[str, dict[str, object]] = {f.relative_to(dest).as_posix(): {"sha256": sha256(f), "bytes": f.stat().st_size}
                 for f in sorted(dest.rglob("*")) if f.is_file()}
        manifest[name] = {"role": entry.role, "path": path, "config_path": config, "files": files}
        flat += [{"model": name, "path": f"{name}/{rel}", **meta} for rel, meta in files.items()]
    (out / "manifest.json").write_text(json.dumps({"models": manifest, "files": flat}, indent=1) + "\n")
    return manifest


def _debs(out: Path, packages: Sequence[str]) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    done = subprocess.run(["apt-get", "download", *packages], cwd=out, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise BundleError(f"apt-get download {' '.join(packages)} failed (this machine must be of the target's Debian release):\n"
                          f"{done.stderr[-2000:]}")
    return sorted(f.name for f in out.glob("*.deb"))


# Test-bed state that must not ship: its configs (incl. the ARI password), logs, recordings, test prompts
# (hold music ships beside the tarball instead: the bed writes it only once started).
_ASTERISK_EXCLUDES = ("./etc/asterisk/*", "./tmp/*", "./run/asterisk/*", "./var/log/asterisk/*",
                      "./var/spool/asterisk/recording/*", "./var/spool/asterisk/monitor/*",
                      "./var/lib/asterisk/astdb.sqlite3", "./usr/share/asterisk/sounds/en/phoneagent-test",
                      "./usr/share/asterisk/moh/*",
                      "./proc/*", "./sys/*")


def _asterisk(out: Path, root: Path) -> dict[str, str]:
    """The Asterisk root as a tarball, remade only when the root was rebuilt (gzip takes ~20 s)."""
    marker = root / testbed.MARKER
    if not marker.is_file():
        raise BundleError(f"no built Asterisk root at {root} (python -m devtools asterisk ensure builds it)")
    source = {"root": str(root), "version": marker.read_text().strip(), "built": str(marker.stat().st_mtime_ns)}
    tarball, stamp = out / "asterisk-root.tar.gz", out / "source.json"
    if not (tarball.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == source):
        out.mkdir(parents=True, exist_ok=True)
        tmp = tarball.with_suffix(".tmp")
        argv = ["tar", "--create", "--gzip", "--numeric-owner", "--one-file-system", "--warning=no-file-ignored",
                f"--file={tmp}", "-C", str(root), *(f"--exclude={x}" for x in _ASTERISK_EXCLUDES), "."]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1200, env={"GZIP": "-1", "PATH": "/usr/bin:/bin"})
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BundleError(f"tar of {root} failed (rc {done.returncode}): {done.stderr[-2000:]}")
        tmp.rename(tarball)
        stamp.write_text(json.dumps(source) + "\n")
    testbed.write_hold_music(out / "moh")  # the bed writes it at its first start, which may not have happened
    return {"tarball": f"asterisk/{tarball.name}", "sha256": sha256(tarball), "version": source["version"]}


def _sums(root: Path) -> None:
    lines = [f"{sha256(f)}  {f.relative_to(root).as_posix()}" for f in sorted(root.rglob("*"))
             if f.is_file() and f.name != "SHA256SUMS"]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def build(out: Path, llama_wheel: Path, models: Sequence[str] = DEFAULT_MODELS,
          pip: Sequence[str] = (sys.executable, "-m", "pip"), asterisk_root: Path | None = None,
          releases: Sequence[str] = ("bookworm",)) -> dict[str, object]:
    """Write the bundle into `out` (made or refreshed in place) and return bundle.json's content.
    `releases`: bookworm (this machine's, always) and others from RELEASE_DEBS."""
    if not llama_wheel.is_file():
        raise BundleError(f"llama-cpp-python wheel {llama_wheel} not found (./dev bundle builds it)")
    if unknown := sorted(set(releases) - {"bookworm", *RELEASE_DEBS}):
        raise BundleError(f"no bundle part for {', '.join(unknown)}: releases are bookworm, {', '.join(RELEASE_DEBS)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "SHA256SUMS").unlink(missing_ok=True)  # a half-refreshed bundle never checks out
    shutil.rmtree(out / "wheels", ignore_errors=True)
    pins = _wheels(out / "wheels", llama_wheel, pip)
    debs = _debs(out / "debs", DEBS)
    kamailio = _debs(out / "kamailio", KAMAILIO_DEBS)
    postgresql = _debs(out / "postgresql", POSTGRESQL_DEBS)
    platforms: dict[str, dict[str, object]] = {"bookworm": {
        "name": "Debian 12", "python": f"{sys.version_info.major}.{sys.version_info.minor}", "wheels": "wheels", "debs_dir": "debs",
        "debs": {name.split("_")[0]: name for name in debs},
        "kamailio": _part("kamailio", kamailio), "postgresql": _part("postgresql", postgresql, version=POSTGRESQL_VERSION["bookworm"])}}
    for suite in releases:
        if suite == "bookworm":
            continue
        _wheels_for(out / f"wheels-{suite}", out / "wheels", RELEASE_PYTHON[suite], pip)
        got = _release_debs(out, suite, {"debs": RELEASE_DEBS[suite], "kamailio": RELEASE_KAMAILIO[suite],
                                         "postgresql": RELEASE_POSTGRESQL[suite]})
        platforms[suite] = {"name": target.release(suite).name, "python": RELEASE_PYTHON[suite], "wheels": f"wheels-{suite}",
                            "debs_dir": f"debs-{suite}", "debs": {name.split("_")[0]: name for name in got["debs"]},
                            "kamailio": _part(f"kamailio-{suite}", got["kamailio"]),
                            "postgresql": _part(f"postgresql-{suite}", got["postgresql"], version=POSTGRESQL_VERSION[suite])}
    for stale in (*out.glob("wheels-*"), *out.glob("debs-*"), *out.glob("kamailio-*"), *out.glob("postgresql-*")):
        if stale.name.split("-", 1)[1] not in platforms:
            shutil.rmtree(stale)
    manifest = _models(out / "models", models)
    shutil.rmtree(out / "agents", ignore_errors=True)
    shutil.copytree(REPO / "agents", out / "agents")
    asterisk = _asterisk(out / "asterisk", asterisk_root or testbed.chroot_root())
    build_info = llama_wheel.parent / "build.json"
    info: dict[str, object] = {
        "project_version": next(p.split("==")[1] for p in pins if p.startswith("onprem-phone-agent==")),
        "project_wheel": next(f.name for f in (out / "wheels").glob("onprem_phone_agent-*.whl")),
        "python_tag": sysconfig.get_config_var("SOABI") or "",  # the build machine's
        "machine": platform.machine(),
        "platforms": platforms,
        "llama_build": json.loads(build_info.read_text()) if build_info.is_file() else None,
        "models": sorted(manifest),
        "asterisk": asterisk,
    }
    (out / "bundle.json").write_text(json.dumps(info, indent=1) + "\n")
    _sums(out)
    return info


def verify(root: Path) -> None:
    """Check every file against SHA256SUMS (a copy cut short or altered fails with its name)."""
    sums = root / "SHA256SUMS"
    if not sums.is_file():
        raise BundleError(f"{root}: no SHA256SUMS (not a bundle, or its build did not finish)")
    for line in sums.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        f = root / rel
        if not f.is_file():
            raise BundleError(f"{root}: {rel} is missing")
        if sha256(f) != digest:
            raise BundleError(f"{root}: {rel} does not match its sha256 in SHA256SUMS")
