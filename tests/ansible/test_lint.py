"""ansible/ is lint-clean: yamllint and ansible-lint's production profile (FQCN modules,
role-prefixed variables, named tasks, no risky shell)."""

from __future__ import annotations

import subprocess

from tests.ansible import ANSIBLE, BIN, ansible_env


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ANSIBLE, capture_output=True, text=True, env=ansible_env(NO_COLOR="1"), timeout=600, check=False)


def test_yamllint_is_clean() -> None:
    done = _run(str(BIN / "yamllint"), "-c", ".yamllint", "--strict", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ansible_lint_production_profile_is_clean() -> None:
    done = _run(str(BIN / "ansible-lint"), "--offline", "--profile", "production")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Passed" in done.stdout + done.stderr
