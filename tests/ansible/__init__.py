"""Tests of ansible/: the tools run from this venv, with the project's ansible.cfg."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
BIN = Path(sys.executable).parent


def ansible_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), **extra}
