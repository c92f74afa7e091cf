"""The offline bundle: everything a box with no network needs to run the agent, checksummed.

Built on a connected machine of the same Debian release as the target (the wheels are built for
its Python), then copied to the ansible controller; the playbook installs only from it.

    bundle/
      bundle.json          what it is: project version, Python tag, platform, llama.cpp build flags
      wheels/              every wheel the service needs (our own, the llama-cpp-python we built)
      wheels/requirements.txt   each wheel pinned by name and version (pip --no-index installs this)
      debs/*.deb           Debian packages the wheels need that a fresh server may lack
      kamailio/*.deb       Debian's kamailio and what a fresh server lacks for it (the proxy host)
      postgresql/*.deb     Debian's PostgreSQL 15 and what a fresh server lacks for it (shared records)
      models/<name>/...    model files named as in the catalogue, models/manifest.json (role, paths, sha256)
      agents/*.yaml        the example agent files
      asterisk/asterisk-root.tar.gz   Asterisk 22 in a Debian sid root (the test bed's method), no configs
      asterisk/moh/*.wav   hold music
      SHA256SUMS           of every file above (`sha256sum -c SHA256SUMS` checks a copied bundle)
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from devtools import testbed
from models import catalog

REPO = Path(__file__).resolve().parent.parent
# Debian packages the wheels need that a fresh server lacks (llama.cpp's OpenMP runtime), shipped
# as .deb files for the target's release: `apt-get download` on the build machine.
DEBS = ("libgomp1",)
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
          pip: Sequence[str] = (sys.executable, "-m", "pip"), asterisk_root: Path | None = None) -> dict[str, object]:
    """Write the bundle into `out` (made or refreshed in place) and return bundle.json's content."""
    if not llama_wheel.is_file():
        raise BundleError(f"llama-cpp-python wheel {llama_wheel} not found (./dev bundle builds it)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "SHA256SUMS").unlink(missing_ok=True)  # a half-refreshed bundle never checks out
    shutil.rmtree(out / "wheels", ignore_errors=True)
    pins = _wheels(out / "wheels", llama_wheel, pip)
    debs = _debs(out / "debs", DEBS)
    kamailio = _debs(out / "kamailio", KAMAILIO_DEBS)
    postgresql = _debs(out / "postgresql", POSTGRESQL_DEBS)
    manifest = _models(out / "models", models)
    shutil.rmtree(out / "agents", ignore_errors=True)
    shutil.copytree(REPO / "agents", out / "agents")
    asterisk = _asterisk(out / "asterisk", asterisk_root or testbed.chroot_root())
    build_info = llama_wheel.parent / "build.json"
    info: dict[str, object] = {
        "project_version": next(p.split("==")[1] for p in pins if p.startswith("onprem-phone-agent==")),
        "project_wheel": next(f.name for f in (out / "wheels").glob("onprem_phone_agent-*.whl")),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "python_tag": sysconfig.get_config_var("SOABI") or "",
        "machine": platform.machine(),
        "llama_build": json.loads(build_info.read_text()) if build_info.is_file() else None,
        "models": sorted(manifest),
        "debs": {name.split("_")[0]: name for name in debs},
        "kamailio": {"debs": {name.split("_")[0]: name for name in kamailio}},
        "postgresql": {"debs": {name.split("_")[0]: name for name in postgresql}},
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
