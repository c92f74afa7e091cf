"""The Asterisk role's config check (files/check_asterisk_config.py), with the real Asterisk 22.

The role stages the repo's configs plus its rendered templates and lets a throwaway Asterisk,
in a network namespace of its own, load them before they replace the live set. Here the check
runs in the test bed's Asterisk root on a staged set rendered from the role's own templates:
the good set passes, and each kind of broken config is caught with the file and the reason.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jinja2
import pytest
import yaml

from devtools import testbed
from tests.ansible import ANSIBLE

ROLE = ANSIBLE / "roles" / "phoneagent_asterisk"
CHECK = ROLE / "files" / "check_asterisk_config.py"
REPO_CONFIGS = ANSIBLE.parent / "asterisk"
SITE = {
    "ansible_managed": "test", "phoneagent_asterisk_http_bind": "10.20.30.40", "phoneagent_asterisk_http_port": 18088,
    "phoneagent_asterisk_sip_bind": "0.0.0.0", "phoneagent_asterisk_sip_port": 15060,
    "phoneagent_asterisk_rtp_start": 30000, "phoneagent_asterisk_rtp_end": 30099,
    "phoneagent_asterisk_ari_user": "agent", "phoneagent_asterisk_ari_password": "a-long-random-password",
    "phoneagent_asterisk_ari_app": "phoneagent", "phoneagent_asterisk_audiosocket": "10.20.30.41:9092",
    "phoneagent_asterisk_sip_peers": [{"name": "pbx", "match": "10.20.30.0/24", "agent": "support", "path": "ari",
                                       "contact": "sip:10.20.30.5"}],
    "phoneagent_asterisk_sip_trunks": [{"name": "carrier", "server": "198.51.100.7:5060", "username": "4930123456",
                                        "password": "trunk-secret", "agent": "support"}],
}


def _static_configs() -> list[str]:
    return list(yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["phoneagent_asterisk_static_configs"])


@pytest.fixture
def staged(asterisk_bed: testbed.AsteriskBed) -> Iterator[tuple[Path, str]]:
    """A staged config set inside the bed's Asterisk root: (host path, path inside the root)."""
    if asterisk_bed.root is None:
        pytest.fail("the check runs the Asterisk of a root; this machine's bed uses the host's Asterisk", pytrace=False)
    inside = f"/etc/asterisk.check-{uuid.uuid4().hex[:8]}"
    path = asterisk_bed.root / inside.lstrip("/")
    path.mkdir()
    for name in _static_configs():
        shutil.copy2(REPO_CONFIGS / name, path / name)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True)
    for template in (ROLE / "templates").glob("*.conf.j2"):
        (path / template.name[:-3]).write_text(env.get_template(template.name).render(**SITE))
    try:
        yield path, inside
    finally:
        shutil.rmtree(path)


def _check(bed_root: Path, inside: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "--net", "python3", str(CHECK), f"--root={bed_root}", f"--etc={inside}",
                           "--extension=agent", "--extension=agent-direct", "--endpoint=pbx", "--endpoint=carrier",
                           "--registration=carrier", "--ari-user=agent"],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_role_s_configs_pass_the_check(staged: tuple[Path, str], asterisk_bed: testbed.AsteriskBed) -> None:
    assert asterisk_bed.root is not None
    done = _check(asterisk_bed.root, staged[1])
    assert done.returncode == 0 and done.stdout.startswith("ok: Asterisk 22."), done.stdout + done.stderr


def _append(name: str, text: str) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        (d / name).write_text((d / name).read_text() + text)
    return edit


def _replace(name: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        assert old in (d / name).read_text()
        (d / name).write_text((d / name).read_text().replace(old, new))
    return edit


BROKEN = {
    "a line that is not an option": (_append("extensions.conf", "this is not valid\n"), "No '=' (equal sign) in line"),
    "an unclosed application call": (_append("extensions.conf", "[x]\nexten => 5,1,Dial(\n"), "No closing parenthesis"),
    "a misspelt endpoint option": (_replace("pjsip.conf", "transport = transport-udp\ncontext", "tranport = transport-udp\ncontext"),
                                   "endpoint pbx did not load"),
    "a trunk registration with no server": (_replace("pjsip.conf", "server_uri = sip:198.51.100.7:5060\n", ""),
                                            "registration carrier did not load"),
    "the agent's dialplan not included": (lambda d: (d / "extensions_phoneagent.conf").unlink(), "context [phoneagent] did not load"),
    "an ARI user without a password": (_replace("ari_user.local.conf", "password = a-long-random-password\n", ""),
                                       "ARI user agent did not load"),
    "ARI's HTTP server disabled": (_replace("http.conf", "enabled = yes", "enabled = no"), "HTTP server (ARI) is not enabled"),
    "the AudioSocket module not loaded": (_append("modules.conf", "noload => chan_audiosocket.so\n"), "2 of 3 AudioSocket modules"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_config_is_caught_with_the_reason(case: str, staged: tuple[Path, str], asterisk_bed: testbed.AsteriskBed) -> None:
    assert asterisk_bed.root is not None
    edit, reason = BROKEN[case]
    edit(staged[0])
    done = _check(asterisk_bed.root, staged[1])
    assert done.returncode == 1 and reason in done.stdout, done.stdout + done.stderr
